"""KServe's ModelServer, bound to one address, and closed to what a caller should not do.

Torch-free. kserve's servers bind every interface, let any caller unload a model, answer odd JSON
with 500s, read REST bodies of any size, wait on slow clients without end, and log a traceback
at ERROR for every bad request. `V2Server` binds REST and gRPC to `host` (127.0.0.1 unless told
otherwise) and puts every request through the same checks on both protocols: the request's form
(serve.api.wire, serve.api.schema), then the model's contract (serve.api.inputs), with one
verdict and one log line per refusal (serve.api.refusals). REST bodies are bounded in size and
time (serve.api.guard), request heads and stalled answers too (serve.api.timeouts), gRPC messages
by the same batch cap (serve.api.grpc_server); the repository extension is off unless asked for
(serve.api.repository); kserve's v1 routes are gone (these models speak v2 only). REST infer goes
through serve.api.rest's orjson codec and both servers run on uvloop (`--kserve-json`,
`--event-loop asyncio`: kserve's own ways, for `make load` to compare). Used by
`python -m serve.api` and `python -m serve.ray_app`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket

from fastapi import APIRouter
from uvloop import new_event_loop

from serve.api import timeouts
from serve.api.flags import limits
from serve.api.grpc_server import BoundGRPCServer
from serve.api.guard import Guard
from serve.api.limits import Limits
from serve.api.protocol import kserve
from serve.api.refusals import install
from serve.api.repository import EXTENSION, Repository, ServedModels, unadvertise
from serve.api.rest import infer_router
from serve.api.wire import HEADER_LENGTH, json_request, rest_request

# kserve's parts, reached through the package serve.api.protocol imported with a clean command line
# (`from kserve.x import y` here would import kserve before that guard runs).
DataPlane = kserve.protocol.dataplane.DataPlane
RESTServer = kserve.protocol.rest.server.RESTServer
metrics_handler = kserve.protocol.rest.server.metrics_handler
register_v2_endpoints = kserve.protocol.rest.v2_endpoints.register_v2_endpoints


def busy_port(host: str, ports: dict[str, int]) -> str | None:
    """A message naming the first of `ports` (flag -> port) taken on `host`, else None.

    kserve would find out only once serving, and end in a traceback."""
    for flag, port in ports.items():
        if not port:  # 0: that server is off
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                return f"{host}:{port} is in use: pass another {flag}"
    return None


class CheckedDataPlane(DataPlane):
    """kserve's data plane, reading REST bodies with serve.api.wire, ready only while every
    served model is, and listing the repository extension only when it is on."""

    def __init__(self, models: ServedModels, repository: bool) -> None:
        super().__init__(model_registry=models)
        self.repository = repository

    async def model_metadata(self, model_name: str) -> dict:
        """kserve's metadata with `platform` (kserve leaves it empty) set as Triton names an ONNX
        model's, plus the execution provider the session really uses: over REST and gRPC alike,
        a client sees whether the GPU serves it."""
        metadata = await super().model_metadata(model_name)
        runtime = getattr(self.get_model_from_registry(model_name), "model", None)
        if runtime is not None:
            metadata["platform"] = f"onnxruntime_onnx ({runtime.providers[0]})"
        return metadata

    def decode_inference_request(self, body, headers, model_name):
        if isinstance(body, bytes):  # rowgen's route, or a body kserve's could not parse
            return rest_request(body, headers.get(HEADER_LENGTH), model_name)
        # kserve's own route (--kserve-json) hands over its pydantic model of the JSON
        return json_request(body.model_dump(exclude_none=True), memoryview(b""), model_name)

    async def ready(self) -> bool:
        return await self.model_registry.all_ready()

    async def model_ready(self, model_name: str, disable_predictor_health_check: bool = False):
        if model_name in self.model_registry.unloaded:  # served, but unloaded: not ready (503)
            return False
        return await super().model_ready(model_name, disable_predictor_health_check)

    def metadata(self) -> dict:
        return {**super().metadata(), "extensions": [EXTENSION] if self.repository else []}


class _RESTServer(RESTServer):
    def __init__(
        self, *args, log_requests: bool, fast_json: bool, limits: Limits, repository: bool, **kw
    ) -> None:
        super().__init__(*args, **kw)
        self.log_requests, self.fast_json = log_requests, fast_json
        self.limits, self.repository = limits, repository
        self.config.http = timeouts.protocol(limits)

    def _register_endpoints(self, app) -> None:
        """rowgen's infer route, then kserve's root, metrics and v2 routes; not its v1 routes,
        which cannot serve these v2 models (a 404 names the v2 routes instead)."""
        if self.fast_json:  # first, so it answers the infer URLs ahead of kserve's route
            app.include_router(infer_router(self.dataplane))
        root = APIRouter()
        root.add_api_route("/", self.dataplane.live)
        root.add_api_route("/metrics", metrics_handler, methods=["GET"])
        app.include_router(root)
        register_v2_endpoints(app, self.dataplane, self.model_repository_extension)
        if not self.repository:
            unadvertise(app)

    def _add_middlewares(self, app) -> None:
        if self.log_requests:  # kserve's per-request timing log
            super()._add_middlewares(app)
        app.add_middleware(Guard, limits=self.limits, dataplane=self.dataplane)  # outermost

    def _add_exception_handlers(self, app) -> None:
        install(app)


class V2Server(kserve.ModelServer):
    """REST on `host:http_port`, gRPC on `host:grpc_port` (0 turns gRPC off), in one process."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        http_port: int = 8080,
        grpc_port: int = 8081,
        log_requests: bool = False,
        fast_json: bool = True,
        uvloop: bool = True,
        limits: Limits | None = None,
        repository: bool = False,
    ) -> None:
        models = ServedModels()
        super().__init__(
            http_port=http_port,
            grpc_port=grpc_port,
            registered_models=models,
            enable_grpc=grpc_port != 0,
            enable_latency_logging=log_requests,
        )
        self.host = host
        self.log_requests = log_requests
        self.fast_json = fast_json
        self.loop_factory = new_event_loop if uvloop else None
        self.limits = limits or Limits()
        self.repository = repository
        self.model_repository_extension = Repository(models, repository)
        self.dataplane = CheckedDataPlane(models, repository)
        if not log_requests:  # one line per request costs more than the model does
            logging.getLogger("uvicorn.access").disabled = True
            kserve.logging.trace_logger.setLevel(logging.WARNING)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> V2Server:
        """The server `serve.api.flags.add_server_args`'s flags describe."""
        return cls(
            args.host,
            args.port,
            args.grpc_port,
            args.log_requests,
            fast_json=not args.kserve_json,
            uvloop=args.event_loop == "uvloop",
            limits=limits(args),
            repository=args.enable_model_repository,
        )

    def start(self, models: list) -> None:
        """Serve `models` until a signal stops the server (kserve's start, with our bindings)."""
        self._register_and_check_atleast_one_model_is_ready(models)
        self._rest_server = _RESTServer(
            kserve.constants.FASTAPI_APP_IMPORT_STRING,
            self.dataplane,
            self.model_repository_extension,
            self.http_port,
            grace_period=self.grace_period,
            event_loop=self.event_loop,
            timeout_keep_alive=self.timeout_keep_alive,
            log_requests=self.log_requests,
            fast_json=self.fast_json,
            limits=self.limits,
            repository=self.repository,
        )
        self._rest_server.config.host = self.host
        self.servers.append(self._rest_server.start())
        if self.enable_grpc:
            self._grpc_server = BoundGRPCServer(
                self.host,
                self.grpc_port,
                self.dataplane,
                self.model_repository_extension,
                kwargs={},
                grace_period=self.grace_period,
                log_requests=self.log_requests,
                limits=self.limits,
            )
            self.servers.append(self._grpc_server.start(self.max_threads))
        # kserve's asyncio.run would serve on the standard event loop, and its setup_event_loop
        # configures a loop that asyncio.run then does not use. Here both happen on one loop,
        # uvloop's unless told otherwise: its C transports cost less per request.
        with asyncio.Runner(loop_factory=self.loop_factory) as runner:
            asyncio.set_event_loop(runner.get_loop())
            self.setup_event_loop()  # the default executor's threads, the exception handler
            self.register_signal_handler()
            runner.run(self._serve())
