"""The v2 REST `infer` route with a JSON codec that costs less than the model. Torch-free.

kserve's own route reads a JSON body with the standard library's `json`, validates it into
pydantic models, turns every output value into a Python float one by one, validates the answer
into pydantic again and has FastAPI's `jsonable_encoder` walk it value by value: with one
28x28 image per request that is most of the server's CPU (profiled with py-spy under
`make load`: about 60% of the process, against 9% in onnxruntime). This route answers the same
URLs with the same protocol through the same kserve `DataPlane` (model registry, readiness,
Prometheus metrics, error handlers), but reads the body as bytes (`orjson`, via
`CheckedDataPlane`) and writes a JSON answer straight from the numpy outputs with orjson. A
request that asks for binary outputs gets kserve's own binary encoding. Registered ahead of
kserve's routes by `serve.api.server`; `--kserve-json` turns it off for comparison.
"""

from __future__ import annotations

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response

from serve.api.protocol import InferResponse, VersionNotServed, kserve
from serve.api.wire import VERSIONS

HEADER_LENGTH = kserve.constants.INFERENCE_CONTENT_LENGTH_HEADER
REST_V2 = kserve.constants.PredictorProtocol.REST_V2.value
to_http_parameters = kserve.protocol.infer_type.to_http_parameters
ModelNotReady = kserve.errors.ModelNotReady


def wants_binary(response: InferResponse) -> bool:
    """True when the request asked for any output as binary data (kserve's rule in to_rest)."""
    requested = response._requested_outputs
    if requested:
        return any(output.binary_data for output in requested)
    return bool(response._use_binary_outputs)


def json_body(response: InferResponse) -> bytes:
    """The v2 JSON answer for `response`, each output's data a flat row-major list.

    orjson writes a float32 array with the shortest text that reads back as the same float32,
    so a client that parses into float32 gets exactly the server's values."""
    requested = [o.name for o in response._requested_outputs or ()]  # checked by the model
    outputs = []
    for output in response.outputs:
        if requested and output.name not in requested:
            continue
        data = output.data if isinstance(output.data, np.ndarray) else output.as_numpy()
        entry = {"name": output.name, "shape": output.shape, "datatype": output.datatype}
        params = to_http_parameters(output.parameters or {})
        params.pop("binary_data_size", None)  # the size of bytes that this answer does not send
        if params:
            entry["parameters"] = params
        entry["data"] = np.ascontiguousarray(data).reshape(-1)
        outputs.append(entry)
    body = {
        "id": response.id,
        "model_name": response.model_name,
        "model_version": response.model_version,
        "outputs": outputs,
    }
    if response.parameters:
        body["parameters"] = to_http_parameters(response.parameters)
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def encode(response: InferResponse) -> Response:
    """JSON by orjson, or kserve's binary encoding (header length in its header) if asked."""
    if not wants_binary(response):
        return Response(json_body(response), media_type="application/json")
    body, json_length = response.to_rest()
    return Response(
        body,
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(json_length)},
    )


def infer_router(dataplane) -> APIRouter:
    """POST /v2/models/{name}[/versions/{version}]/infer through `dataplane` (a DataPlane)."""

    async def infer(request: Request, model_name: str, model_version: str | None = None):
        if model_version:  # as kserve's route and gRPC (serve.api.wire): not served
            raise VersionNotServed(VERSIONS)
        if not await dataplane.model_ready(model_name, True):
            raise ModelNotReady(model_name)
        headers = dict(request.headers)
        body = await request.body()
        infer_request, _ = dataplane.decode(body, headers, REST_V2, model_name)
        response, _ = await dataplane.infer(model_name, infer_request, headers)
        return encode(response)

    router = APIRouter(prefix="/v2")
    for path in (
        "/models/{model_name}/infer",
        "/models/{model_name}/versions/{model_version}/infer",
    ):
        router.add_api_route(path, infer, methods=["POST"], include_in_schema=False)
    return router
