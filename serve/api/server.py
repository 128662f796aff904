"""KServe's ModelServer, bound to one address, with rowgen's answers for overload and bad bodies.

Torch-free. kserve's REST server binds every interface (0.0.0.0) and its gRPC server [::];
`V2Server` binds both to `host` (127.0.0.1 unless the caller says otherwise), answers a full queue
with 503 + Retry-After, turns a malformed binary body into a 400 naming the problem (kserve would
answer 500), and can leave out the per-request logging and timing middleware that cost throughput.
REST infer goes through `serve.api.rest`'s orjson codec and both servers run on uvloop
(`--kserve-json`, `--event-loop asyncio`: kserve's own ways, for `make load` to compare).
Used by `python -m serve.api` and `python -m serve.ray_app`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
from concurrent import futures

import orjson
from fastapi import Request
from fastapi.responses import JSONResponse
from grpc import aio
from uvloop import new_event_loop

from serve.api.protocol import InferRequest, InvalidInput, Overloaded, kserve
from serve.api.rest import infer_router

# kserve's parts, reached through the package serve.api.protocol imported with a clean command line
# (`from kserve.x import y` here would import kserve before that guard runs).
DataPlane = kserve.protocol.dataplane.DataPlane
RequestedOutput = kserve.protocol.infer_type.RequestedOutput
InferInput = kserve.InferInput
RESTServer = kserve.protocol.rest.server.RESTServer
GRPCServer = kserve.protocol.grpc.server.GRPCServer
InferenceServicer = kserve.protocol.grpc.servicer.InferenceServicer
interceptors = kserve.protocol.grpc.interceptors
grpc_service = kserve.protocol.grpc.grpc_predict_v2_pb2_grpc

HEADER_LENGTH = kserve.constants.INFERENCE_CONTENT_LENGTH_HEADER
RETRY_AFTER_S = 1
GRPC_MAX_MESSAGE = 64 * 1024 * 1024  # 64 MiB: about 21,000 images of 28x28 FP32 per request


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


def read_binary_request(body: bytes, json_length: int, model_name: str):
    """A REST body with binary tensors (or pure JSON sent as bytes) as an InferRequest.

    kserve's own `InferRequest.from_bytes` turns every binary tensor into a Python list and
    back; here the bytes stay bytes until the model reads them (numpy.frombuffer), which is
    what the binary extension is for. A body shorter than its sizes say is named as truncated.
    """
    header = orjson.loads(body[:json_length])
    offset, inputs = json_length, []
    for spec in header["inputs"]:
        params = spec.get("parameters") or {}
        tensor = InferInput(spec["name"], spec["shape"], spec["datatype"], spec.get("data"), params)
        if "data" not in spec:
            size = params.get("binary_data_size")
            if size is None:
                raise InvalidInput(f"input {spec['name']!r} has neither data nor binary_data_size")
            tensor._raw_data = body[offset : offset + size]
            if len(tensor._raw_data) != size:
                raise InvalidInput(
                    f"input {spec['name']!r}: the body ends {size - len(tensor._raw_data)} bytes "
                    f"short of its binary_data_size {size} (truncated?)"
                )
            offset += size
        inputs.append(tensor)
    outputs = [RequestedOutput(o["name"], o.get("parameters")) for o in header.get("outputs", [])]
    return InferRequest(
        model_name,
        inputs,
        request_id=header.get("id"),
        parameters=header.get("parameters"),
        request_outputs=outputs or None,
    )


class CheckedDataPlane(DataPlane):
    """kserve's data plane, decoding byte bodies by `read_binary_request`, where a body that
    does not parse is the client's error (a 400 naming it; kserve would answer 500), and whose
    model metadata names what runs the model."""

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
        if not isinstance(body, bytes):
            return super().decode_inference_request(body, headers, model_name)
        # A JSON body sent without `Content-Type: application/json` (tritonclient's HTTP client
        # does that) reaches here as bytes too: a binary request with no binary part.
        length = headers.get(HEADER_LENGTH)
        try:
            return read_binary_request(body, int(length or len(body)), model_name)
        except InvalidInput:
            raise
        except (KeyError, ValueError, TypeError, IndexError, AttributeError) as exc:
            shape = (
                'a JSON object whose "inputs" list gives each input\'s name, shape, datatype '
                "and data"
                if length is None
                else "a JSON header listing every input, then the bytes of each input's "
                "binary_data_size (is the body truncated?)"
            )
            raise InvalidInput(
                f"malformed inference request ({type(exc).__name__}: {exc}): the body must be "
                f"{shape}"
            ) from None


async def overloaded_handler(_: Request, exc: Overloaded) -> JSONResponse:
    return JSONResponse(
        status_code=503,
        content={"error": exc.details},
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


class _RESTServer(RESTServer):
    def __init__(self, *args, log_requests: bool, fast_json: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.log_requests = log_requests
        self.fast_json = fast_json

    def _register_endpoints(self, app) -> None:
        if self.fast_json:  # first, so it answers the infer URLs ahead of kserve's route
            app.include_router(infer_router(self.dataplane))
        super()._register_endpoints(app)

    def _add_middlewares(self, app) -> None:
        if self.log_requests:  # kserve's per-request timing log
            super()._add_middlewares(app)

    def _add_exception_handlers(self, app) -> None:
        app.add_exception_handler(Overloaded, overloaded_handler)
        super()._add_exception_handlers(app)


class _GRPCServer(GRPCServer):
    """kserve's gRPC server, listening on `host` only."""

    def __init__(self, host: str, *args, log_requests: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.host = host
        self.log_requests = log_requests

    async def start(self, max_workers: int) -> None:
        chain = [interceptors.ExceptionToStatusInterceptor()]
        if self.log_requests:
            chain.insert(0, interceptors.LoggingInterceptor())
        options = [
            ("grpc.max_send_message_length", GRPC_MAX_MESSAGE),
            ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE),
        ]
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=chain,
            options=options,
        )
        servicer = InferenceServicer(self._data_plane, self._model_repository_extension)
        grpc_service.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        self._server.add_insecure_port(f"{self.host}:{self._port}")
        await self._server.start()
        await self._server.wait_for_termination()


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
    ) -> None:
        super().__init__(
            http_port=http_port,
            grpc_port=grpc_port,
            enable_grpc=grpc_port != 0,
            enable_latency_logging=log_requests,
        )
        self.host = host
        self.log_requests = log_requests
        self.fast_json = fast_json
        self.loop_factory = new_event_loop if uvloop else None
        self.dataplane = CheckedDataPlane(model_registry=self.registered_models)
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
        )
        self._rest_server.config.host = self.host
        self.servers.append(self._rest_server.start())
        if self.enable_grpc:
            self._grpc_server = _GRPCServer(
                self.host,
                self.grpc_port,
                self.dataplane,
                self.model_repository_extension,
                kwargs={},
                grace_period=self.grace_period,
                log_requests=self.log_requests,
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
