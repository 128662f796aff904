"""The form every v2 request must have, REST or gRPC, checked before anything is read. Torch-free.

serve.api.wire reads each protocol's request into a `RequestHead` (what the request says about its
tensors, not their data) and `check_head` applies the protocol's rules to it, so both protocols
get one verdict: an `id` of at most MAX_ID_CHARS characters; at least one input; inputs and
requested outputs with names, each given once; datatypes spelled as the protocol spells them
(`FP32`, not `fp32`); shapes of at most MAX_RANK whole dimensions, each at least 1; and the
parameters this server reads of the right type: the request's `binary_data_output` and an output's
`binary_data` true or false, an input's `binary_data_size` a whole number of bytes. The model's
own rules (which names, datatypes and shapes, how many images) are serve.api.inputs'. Every
problem is an InvalidInput naming the field and the rule.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from serve.api.protocol import InvalidInput
from serve.api.refusals import shown

# The Open Inference Protocol's tensor datatypes, exactly as it spells them.
DATATYPES = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BF16", "BYTES",
)  # fmt: skip
MAX_ID_CHARS = 1024  # the id comes back in the answer
MAX_RANK = 8

Scalar = bool | int | float | str


@dataclass(frozen=True)
class TensorHead:
    """An input (or a requested output: no datatype, no shape) as the request describes it."""

    where: str  # how messages name it: "inputs[0]"
    name: str
    parameters: dict[str, Scalar]
    datatype: str = ""
    shape: tuple[int, ...] = ()


@dataclass(frozen=True)
class RequestHead:
    id: str
    parameters: dict[str, Scalar]
    inputs: list[TensorHead]
    outputs: list[TensorHead] = field(default_factory=list)


def check_head(head: RequestHead) -> None:
    """InvalidInput for the first rule of the protocol that `head` breaks."""
    if len(head.id) > MAX_ID_CHARS:
        raise InvalidInput(f"id is {len(head.id):,} characters long; at most {MAX_ID_CHARS:,}")
    _check_flag(head.parameters, "binary_data_output", "parameters")
    if not head.inputs:
        raise InvalidInput("the request has no inputs: GET /v2/models/{name} lists a model's")
    _check_names(head.inputs, "input")
    _check_names(head.outputs, "output")
    for tensor in head.inputs:
        _check_tensor(tensor)
    for output in head.outputs:
        _check_flag(output.parameters, "binary_data", f"{output.where}.parameters")


def _check_names(tensors: list[TensorHead], kind: str) -> None:
    for tensor in tensors:
        if not tensor.name:
            raise InvalidInput(f"{tensor.where}.name is empty: name the {kind}")
    twice = [name for name, n in Counter(t.name for t in tensors).items() if n > 1]
    if twice:
        raise InvalidInput(f"{kind} {shown(twice[0])} is given twice: give each {kind} once")


def _check_tensor(tensor: TensorHead) -> None:
    where = tensor.where
    if tensor.datatype not in DATATYPES:
        raise InvalidInput(
            f"{where}.datatype is {shown(tensor.datatype)}: the protocol's datatypes are "
            f"{', '.join(DATATYPES)}, spelled exactly so"
        )
    if len(tensor.shape) > MAX_RANK:
        raise InvalidInput(f"{where}.shape has {len(tensor.shape)} dimensions; at most {MAX_RANK}")
    if bad := [d for d in tensor.shape if d < 1]:
        raise InvalidInput(
            f"{where}.shape {shown(list(tensor.shape))} has dimension {shown(bad[0])}: every "
            "dimension is a whole number of at least 1"
        )
    size = tensor.parameters.get("binary_data_size")
    if size is not None and (type(size) is not int or size < 0):
        raise InvalidInput(
            f"{where}.parameters.binary_data_size is {shown(size)}: it is the number of bytes "
            "of the input's binary data, a whole number of at least 0"
        )


def _check_flag(parameters: dict[str, Scalar], key: str, where: str) -> None:
    value = parameters.get(key)
    if value is not None and type(value) is not bool:
        raise InvalidInput(f"{where}.{key} is {shown(value)}: it must be true or false")
