"""v2 requests as the attacks and tests send them: a valid request built from a model's own
metadata, its REST body (JSON, or with binary tensors), its gRPC message, and one call of each
that returns the answer whatever it is. Torch-free; the gRPC side needs tritonclient[grpc]. Used
by bench.hostile, bench.attack and the tests of tests/api.
"""

from __future__ import annotations

import functools
import http.client
import json

import numpy as np

from rowgen import contract

_, KNOWN_ROWS, _, TEMPERATURE = (s.name for s in contract.sample_inputs(1))
VALID = {KNOWN_ROWS: 14, TEMPERATURE: 1.0}  # every other input: 0.5 (a pixel, a state, noise)
GRPC_CODES = {  # HTTP status -> the gRPC code of the same verdict (serve.api.refusals)
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "RESOURCE_EXHAUSTED",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
}


def metadata(base: str, model: str) -> dict:
    """GET /v2/models/{model}: its inputs and outputs."""
    connection = http.client.HTTPConnection(base, timeout=30)
    connection.request("GET", f"/v2/models/{model}")
    return json.loads(connection.getresponse().read())


def valid_request(meta: dict, batch: int = 1, arrays: bool = False) -> dict:
    """A JSON request the model answers: `batch` images of in-range values (as numpy arrays
    with `arrays`, for `binary_body` to send large batches without a list per value)."""
    inputs = []
    for tensor in meta["inputs"]:
        shape = [batch, *tensor["shape"][1:]]
        value = VALID.get(tensor["name"], 0.5)
        count = int(np.prod(shape))
        data = np.full(count, value, _dtype(tensor)) if arrays else [value] * count
        inputs.append({**tensor, "shape": shape, "data": data})
    return {"inputs": inputs}


def _dtype(tensor: dict) -> type:
    return np.int64 if tensor["datatype"] == "INT64" else np.float32


def binary_body(request: dict, binary: tuple[int, ...], trailing: bytes = b"") -> tuple:
    """(body, headers) of `request` with the inputs at `binary` sent as bytes after the JSON."""
    body, parts = {**request, "inputs": [dict(t) for t in request["inputs"]]}, []
    for i, tensor in enumerate(body["inputs"]):
        if i in binary:
            data = _bytes(tensor)
            del tensor["data"]
            tensor["parameters"] = {**tensor.get("parameters", {}), "binary_data_size": len(data)}
            parts.append(data)
    header = json.dumps(body).encode()
    headers = {"Inference-Header-Content-Length": str(len(header))} if binary else {}
    return header + b"".join(parts) + trailing, headers


def _bytes(tensor: dict) -> bytes:
    return np.asarray(tensor["data"], _dtype(tensor)).tobytes()


def post(base: str, path: str, body: bytes, headers: dict, timeout: float = 60):
    """(status, the "error" message or the answer, keep-alive kept) of one POST."""
    connection = http.client.HTTPConnection(base, timeout=timeout)
    try:
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        raw = response.read()
        kept = response.getheader("connection", "").lower() != "close"
    finally:
        connection.close()
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = {"error": raw[:200].decode(errors="replace")}
    return (
        response.status,
        answer.get("error", answer) if isinstance(answer, dict) else answer,
        kept,
    )


def grpc_message(request: dict, model: str, raw: bool = False, version: str = ""):
    """A JSON request (of types protobuf can hold) as a ModelInferRequest; `raw`: every input's
    values as bytes in raw_input_contents (gRPC takes them for all inputs or none)."""
    from tritonclient.grpc import service_pb2

    message = service_pb2.ModelInferRequest(
        model_name=model, model_version=version, id=request.get("id", "")
    )
    for key, value in (request.get("parameters") or {}).items():
        _grpc_parameter(message.parameters[key], value)
    for tensor in request["inputs"]:
        grpc_input = message.inputs.add(
            name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"]
        )
        if raw:
            message.raw_input_contents.append(_bytes(tensor))
        elif tensor["datatype"] == "INT64":
            grpc_input.contents.int64_contents.extend(tensor["data"])
        else:
            grpc_input.contents.fp32_contents.extend(tensor["data"])
    for output in request.get("outputs", []):
        grpc_output = message.outputs.add(name=output["name"])
        for key, value in (output.get("parameters") or {}).items():
            _grpc_parameter(grpc_output.parameters[key], value)
    return message


def _grpc_parameter(parameter, value) -> None:
    if isinstance(value, bool):
        parameter.bool_param = value
    elif isinstance(value, int):
        parameter.int64_param = value
    else:
        parameter.string_param = str(value)


def grpc_call(url: str, method: str, message, timeout: float = 60) -> tuple[str, str]:
    """(status code name, details) of one gRPC call of `method` on the inference service."""
    import grpc

    try:
        getattr(_stub(url), method)(message, timeout=timeout)
        return "OK", ""
    except grpc.RpcError as exc:
        return exc.code().name, exc.details() or ""


@functools.cache
def _stub(url: str):
    """One channel per server, kept: the client sends messages of any size (the server is
    what is being tried)."""
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    unlimited = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    return service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(url, unlimited))
