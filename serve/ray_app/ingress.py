"""`make api`'s v2 REST app as a Ray Serve ingress deployment (serve.ray_app.app builds it).

Torch-free. Each `V2Ingress` replica opens every bundle (serve.runtime), holds its v2 models with
their micro-batchers (serve.api.models) and answers through the REST app `make api` serves
(serve.api.server: the same routes, serve.api.rest's codec, the same checks and errors, 503 with
Retry-After when a batcher's queue is full). Serve's proxies (one per node) route each request
to a replica; each answer names the replica and its node in two headers.
"""

from __future__ import annotations

import ray
from ray import serve

from serve.ray_app.config import NODE_HEADER, REPLICA_HEADER


@serve.deployment
@serve.ingress()
class V2Ingress:
    """One replica: every bundle's v2 models behind `make api`'s REST app."""

    def __init__(self, argv: list[str]) -> None:
        from serve.api.models import bundle_models
        from serve.api.server import V2Server
        from serve.ray_app.app import parse
        from serve.runtime import load_models

        args = parse(argv)  # `python -m serve.api`'s flags, checked by its own parser
        found = load_models(args.artifacts, args.device)
        batching = args.batching
        self.models = [m for model in found.models.values() for m in bundle_models(model, batching)]
        self.server = V2Server.from_args(args)  # no socket: its REST app goes to Serve
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.node = ray.get_runtime_context().get_node_id()

    def __serve_build_asgi_app__(self):
        from serve.api.protocol import kserve

        # `make api`'s REST server for these models, its app handed to Serve instead of uvicorn.
        # The app is kserve's module-level one: one app per replica process.
        self.server.rest_server(self.models).create_application()
        app = kserve.model_server.app
        app.add_middleware(NameTheReplica, node=self.node, replica=self.replica)
        return app


class NameTheReplica:
    """ASGI middleware: every answer says which replica, on which Ray node, gave it."""

    def __init__(self, app, node: str, replica: str) -> None:
        self.app = app
        self.headers = [
            (NODE_HEADER.encode(), node.encode()),
            (REPLICA_HEADER.encode(), replica.encode()),
        ]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def named(message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.headers]
            await send(message)

        return await self.app(scope, receive, named)
