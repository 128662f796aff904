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


def rest_app(models: list):
    """`make api`'s REST application (serve.api.server) serving `models`, without a socket."""
    from serve.api.protocol import kserve
    from serve.api.server import V2Server, _RESTServer

    server = V2Server()
    server._register_and_check_atleast_one_model_is_ready(models)
    rest = _RESTServer(
        kserve.constants.FASTAPI_APP_IMPORT_STRING,
        server.dataplane,
        server.model_repository_extension,
        0,  # no socket: Serve hands the app its requests
        log_requests=False,
        fast_json=True,
    )
    rest.create_application()  # on kserve's module-level app: one app per replica process
    return kserve.model_server.app


@serve.deployment
@serve.ingress()
class V2Ingress:
    """One replica: every bundle's v2 models behind `make api`'s REST app."""

    def __init__(self, argv: list[str]) -> None:
        from serve.api.flags import batch_settings
        from serve.api.models import bundle_models
        from serve.ray_app.app import parse
        from serve.runtime import load_models

        args = parse(argv)
        settings = batch_settings(args)
        found = load_models(args.artifacts, args.device)
        self.models = [m for model in found.models.values() for m in bundle_models(model, settings)]
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.node = ray.get_runtime_context().get_node_id()

    def __serve_build_asgi_app__(self):
        app = rest_app(self.models)
        headers = {NODE_HEADER: self.node, REPLICA_HEADER: self.replica}

        @app.middleware("http")
        async def name_the_replica(request, call_next):
            response = await call_next(request)
            response.headers.update(headers)
            return response

        return app
