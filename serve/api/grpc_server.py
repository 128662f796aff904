"""The v2 API's gRPC server: kserve's, on one address, reading requests as REST reads them.

Torch-free. `Servicer` is kserve's servicer with REST's checks: a request is read by
serve.api.wire (the same form, and the same refusal of model versions as REST's version URLs)
and a model that is not ready answers UNAVAILABLE before its request is read, as REST's route
does. `BoundGRPCServer` listens on `host` only, with serve.api.refusals' interceptor and
serve.api.limits' bounds: the largest message any served model takes, the HTTP/2 handshake
within the header timeout, a connection's age (GRPC_CONNECTION_AGE_S, then GOAWAY, calls in
flight getting the body timeout to end) and GRPC_STREAMS calls at once on one connection. Used
by serve.api.server.
"""

from __future__ import annotations

from concurrent import futures

from grpc import aio

from serve.api.limits import Limits, item_values
from serve.api.protocol import VersionNotServed, kserve
from serve.api.refusals import RefusingInterceptor
from serve.api.wire import VERSIONS, grpc_request

# kserve's parts, reached through the package serve.api.protocol imported with a clean command line
GRPCServer = kserve.protocol.grpc.server.GRPCServer
InferenceServicer = kserve.protocol.grpc.servicer.InferenceServicer
interceptors = kserve.protocol.grpc.interceptors
grpc_service = kserve.protocol.grpc.grpc_predict_v2_pb2_grpc
ModelNotReady = kserve.errors.ModelNotReady
to_headers = kserve.utils.to_headers  # the package binds its utils.utils module here

GRPC_CONNECTION_AGE_S = 120  # then GOAWAY: clients reconnect; calls in flight get body_timeout_s
GRPC_STREAMS = 100  # calls at once on one gRPC connection


class Servicer(InferenceServicer):
    """kserve's gRPC servicer, reading requests as REST's are read (serve.api.wire): the same
    checks, and model versions refused as REST's version URLs are."""

    async def ModelInfer(self, request, context):
        if not await self._data_plane.model_ready(request.model_name, True):  # as REST's route
            raise ModelNotReady(request.model_name)
        infer_request = grpc_request(request)
        response, _ = await self._data_plane.infer(
            request.model_name, infer_request, to_headers(context)
        )
        return response.to_grpc()

    async def ModelMetadata(self, request, context):
        if request.version:
            raise VersionNotServed(VERSIONS)
        return await super().ModelMetadata(request, context)

    async def ModelReady(self, request, context):
        if request.version:
            raise VersionNotServed(VERSIONS)
        return await super().ModelReady(request, context)


class BoundGRPCServer(GRPCServer):
    """kserve's gRPC server, listening on `host` only, with serve.api.limits' bounds."""

    def __init__(self, host: str, *args, log_requests: bool, limits: Limits, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.host, self.log_requests, self.limits = host, log_requests, limits

    async def start(self, max_workers: int) -> None:
        chain = [RefusingInterceptor()]
        if self.log_requests:
            chain.insert(0, interceptors.LoggingInterceptor())
        message = await self.message_bytes()
        options = [
            ("grpc.max_send_message_length", message),
            ("grpc.max_receive_message_length", message),
            ("grpc.server_handshake_timeout_ms", int(self.limits.header_timeout_s * 1000)),
            ("grpc.max_connection_age_ms", GRPC_CONNECTION_AGE_S * 1000),
            ("grpc.max_connection_age_grace_ms", int(self.limits.body_timeout_s * 1000)),
            ("grpc.max_concurrent_streams", GRPC_STREAMS),
        ]
        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=chain,
            options=options,
        )
        servicer = Servicer(self._data_plane, self._model_repository_extension)
        grpc_service.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        self._server.add_insecure_port(f"{self.host}:{self._port}")
        await self._server.start()
        await self._server.wait_for_termination()

    async def message_bytes(self) -> int:
        """The largest request or answer of any served model (serve.api.limits)."""
        values = []
        for name in self._data_plane.model_registry.get_models():
            meta = await self._data_plane.model_metadata(name)
            values.append(max(item_values(meta["inputs"]), item_values(meta["outputs"])))
        return self.limits.message_bytes(max(values))
