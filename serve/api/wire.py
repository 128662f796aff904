"""A v2 request off the wire, REST or gRPC, as kserve's InferRequest, its form checked. Torch-free.

REST: the JSON header (the whole body, or its first `Inference-Header-Content-Length` bytes) is
parsed with orjson and checked field by field against the protocol's JSON schema: an object with a
list of `inputs` (each an object with a string `name`, a `shape` list of integers, a string
`datatype`, `parameters`, and either a `data` list or a `binary_data_size` parameter), an optional
list of `outputs` (a string `name`, `parameters`), a string `id` and `parameters`, where every
`parameters` is an object of strings, numbers and booleans; no other fields. The binary parts are
then cut from the body in order, and must use it up exactly. gRPC: protobuf fixes the types; a
model version is not served (as over REST) and raw contents come one per input or not at all.
Both end in serve.api.schema.check_head, so the protocol's rules are checked once for both, and
nothing is decoded here (serve.api.inputs reads the tensors against the model). Every problem is
an InvalidInput naming the field and the rule. Used by serve.api.server and serve.api.servicer.
"""

from __future__ import annotations

import orjson

from serve.api.protocol import InferRequest, InvalidInput, VersionNotServed, kserve
from serve.api.refusals import clip, json_kind, shown
from serve.api.schema import RequestHead, Scalar, TensorHead, check_head

InferInput = kserve.InferInput
RequestedOutput = kserve.protocol.infer_type.RequestedOutput
get_content = kserve.protocol.infer_type.get_content
HEADER_LENGTH = kserve.constants.INFERENCE_CONTENT_LENGTH_HEADER

REQUEST_FIELDS = ("id", "parameters", "inputs", "outputs")
INPUT_FIELDS = ("name", "shape", "datatype", "parameters", "data")
OUTPUT_FIELDS = ("name", "parameters")
WHOLE = (
    'the body must be a JSON object whose "inputs" list gives each input\'s name, shape, '
    "datatype and data"
)
VERSIONS = (
    "no such model version: models are served unversioned; "
    "leave the version out (/v2/models/{name}/infer)"
)


def malformed(problem: str) -> InvalidInput:
    return InvalidInput(f"malformed inference request: {problem}")


def rest_request(body: bytes, header_length: str | None, model_name: str) -> InferRequest:
    """A REST infer body (with `header_length`, the binary extension's) as an InferRequest."""
    binary = memoryview(b"")
    if header_length is not None:
        length = _header_length(header_length, len(body))
        body, binary = body[:length], memoryview(body)[length:]
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise malformed(f"not JSON ({clip(str(exc), 120)}): {WHOLE}") from None
    return json_request(data, binary, model_name)


def _header_length(value: str, body_bytes: int) -> int:
    if not (value.isascii() and value.isdigit()):
        raise InvalidInput(
            f"{HEADER_LENGTH} is {shown(value)}: it must be the byte length of the JSON header"
        )
    length = int(value)
    if length > body_bytes:
        raise InvalidInput(
            f"{HEADER_LENGTH} says the JSON header is {length:,} bytes, but the whole body is "
            f"{body_bytes:,} (truncated?)"
        )
    return length


def json_request(data: object, binary: memoryview, model_name: str) -> InferRequest:
    """A parsed REST JSON header, and the binary parts after it, as an InferRequest."""
    if not isinstance(data, dict):
        raise malformed(f"the body is {json_kind(data)}: {WHOLE}")
    request = _fields(data, "the request", REQUEST_FIELDS)
    if "inputs" not in request:
        raise malformed(f'no "inputs" list: {WHOLE}')
    inputs = [
        _fields(t, f"inputs[{i}]", INPUT_FIELDS) for i, t in enumerate(_list(request, "inputs"))
    ]
    outputs = [
        _fields(t, f"outputs[{i}]", OUTPUT_FIELDS)
        for i, t in enumerate(_list(request, "outputs") if "outputs" in request else [])
    ]
    heads = [_input_head(t, f"inputs[{i}]") for i, t in enumerate(inputs)]
    head = RequestHead(
        id=_typed(request, "id", str, "a string", "the request") if "id" in request else "",
        parameters=_parameters(request, "the request"),
        inputs=heads,
        outputs=[
            TensorHead(f"outputs[{i}]", _typed(t, "name", str, "a string", f"outputs[{i}]"),
                       _parameters(t, f"outputs[{i}]"))
            for i, t in enumerate(outputs)
        ],
    )  # fmt: skip
    check_head(head)
    tensors, offset = [], 0
    for spec, tensor in zip(inputs, heads, strict=True):
        size = tensor.parameters.get("binary_data_size")
        if ("data" in spec) == (size is not None):
            raise InvalidInput(
                f"{tensor.where} has {'both' if size is not None else 'neither'} data and "
                "binary_data_size: give its values in data, or its bytes after the JSON header"
            )
        infer_input = InferInput(tensor.name, list(tensor.shape), tensor.datatype)
        if size is None:
            infer_input.data = _typed(spec, "data", list, "a list", tensor.where)
        else:
            raw = binary[offset : offset + size]
            if len(raw) < size:
                raise InvalidInput(
                    f"{tensor.where}: the body ends {size - len(raw):,} bytes short of its "
                    f"binary_data_size {size:,} (truncated?)"
                )
            infer_input._raw_data = bytes(raw)
            offset += size
        tensors.append(infer_input)
    if offset != len(binary):
        raise InvalidInput(
            f"the body has {len(binary) - offset:,} bytes after its binary inputs: the "
            "binary_data_size of the inputs must add up to the bytes after the JSON header"
        )
    return InferRequest(
        model_name,
        tensors,
        request_id=head.id,
        parameters=head.parameters,
        request_outputs=[RequestedOutput(o.name, o.parameters) for o in head.outputs] or None,
    )


def _fields(value: object, where: str, allowed: tuple[str, ...]) -> dict:
    if not isinstance(value, dict):
        raise malformed(f"{where} is {json_kind(value)}; it must be an object")
    if unknown := [k for k in value if k not in allowed]:
        raise malformed(
            f"{where} has a field {shown(unknown[0])} the protocol does not define: it takes "
            f"{', '.join(allowed)}"
        )
    return value


def _typed(value: dict, key: str, kind: type, what: str, where: str):
    if key not in value:
        raise malformed(f"{where} has no {key}; it must be {what}")
    if type(found := value[key]) is not kind:
        raise malformed(f"{where}.{key} is {json_kind(found)}; it must be {what}")
    return found


def _list(value: dict, key: str) -> list:
    found = value[key]
    if type(found) is not list:
        raise malformed(f'"{key}" is {json_kind(found)}; it must be a list. {WHOLE}')
    return found


def _parameters(value: dict, where: str) -> dict[str, Scalar]:
    found = value.get("parameters", {})
    if type(found) is not dict:
        raise malformed(f"{where}'s parameters is {json_kind(found)}; it must be an object")
    for key, item in found.items():
        if type(item) not in (bool, int, float, str):
            raise malformed(
                f"{where}'s parameter {shown(key)} is {json_kind(item)}; a parameter is a "
                "string, a number or true/false"
            )
    return found


def _input_head(tensor: dict, where: str) -> TensorHead:
    shape = _typed(tensor, "shape", list, "a list of whole numbers", where)
    if bad := [d for d in shape if type(d) is not int]:
        raise malformed(f"{where}.shape holds {json_kind(bad[0])}; dimensions are whole numbers")
    return TensorHead(
        where,
        _typed(tensor, "name", str, "a string", where),
        _parameters(tensor, where),
        _typed(tensor, "datatype", str, "a string", where),
        tuple(shape),
    )


def grpc_request(request) -> InferRequest:
    """A gRPC ModelInferRequest as an InferRequest, after the same checks as REST's."""
    if request.model_version:
        raise VersionNotServed(VERSIONS)
    head = RequestHead(
        id=request.id,
        parameters=_grpc_parameters(request.parameters, "parameters"),
        inputs=[
            TensorHead(f"inputs[{i}]", t.name,
                       _grpc_parameters(t.parameters, f"inputs[{i}].parameters"),
                       t.datatype, tuple(t.shape))
            for i, t in enumerate(request.inputs)
        ],
        outputs=[
            TensorHead(f"outputs[{i}]", o.name,
                       _grpc_parameters(o.parameters, f"outputs[{i}].parameters"))
            for i, o in enumerate(request.outputs)
        ],
    )  # fmt: skip
    check_head(head)
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInput(
            f"the request has {len(raw)} raw_input_contents for {len(request.inputs)} inputs: "
            "give one per input, in order, or none"
        )
    if raw and any(t.HasField("contents") for t in request.inputs):
        raise InvalidInput(
            "give every input's values in contents or in raw_input_contents, not both"
        )
    inputs = [
        InferInput(t.name, list(t.shape), t.datatype, None if raw else _contents(t), h.parameters)
        for t, h in zip(request.inputs, head.inputs, strict=True)
    ]
    return InferRequest(
        request.model_name,
        inputs,
        request_id=request.id,
        raw_inputs=raw,  # and so raw outputs, as kserve answers
        from_grpc=True,
        parameters=head.parameters,
        request_outputs=[RequestedOutput(o.name, o.parameters) for o in head.outputs] or None,
    )


def _contents(tensor) -> list:
    """The values of the contents field of the tensor's datatype (kserve's choice of field);
    BF16 has none (raw only): no values, which serve.api.inputs then names."""
    return [] if tensor.datatype == "BF16" else get_content(tensor.datatype, tensor.contents)


def _grpc_parameters(parameters, where: str) -> dict[str, Scalar]:
    values = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        if choice is None:
            raise InvalidInput(
                f"{where}.{shown(key)} has no value this server reads: a bool, int64 or string"
            )
        values[key] = getattr(parameter, choice)
    return values
