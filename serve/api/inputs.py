"""The tensors of a v2 request, checked against the model's contract, then read. Torch-free.

One function for every model and both protocols (serve.api.wire has already checked the request's
form), in this order, so the same request gets the same answer however it came: the input names
(each of the model's, no other), their datatypes and shapes, one batch size across inputs, at most
`max_images` images (the batch cap, the same for every model of a bundle), requested outputs
among the model's; only then is any data read: as many values as the shape holds (binary:
exactly its bytes; JSON: numbers for FP32, integers for INT64, never strings, booleans or null),
all finite. Then the models' own ranges: pixels and rows in [0, 1], known_rows in 1..27, noise
and noise_row within NOISE_LIMIT, temperature in 0..2, a held class's kind in [0, 1] and row_known
0 or 1; and after inference, outputs that are all
finite. Every problem is an InvalidInput (400 over REST, INVALID_ARGUMENT over gRPC) naming the
tensor and the rule. Used by the models of serve.api.models.
"""

from __future__ import annotations

import math

import numpy as np

from rowgen import contract
from rowgen.contract import TensorSpec
from rowgen.sampling import MAX_TEMPERATURE, NOISE_LIMIT
from serve.api.protocol import InferRequest, InvalidInput
from serve.api.refusals import json_kind, shown

DATATYPES = {"float32": "FP32", "int64": "INT64"}  # contract dtype -> v2 datatype
JSON_TYPES = {"FP32": {float, int}, "INT64": {int}}  # what a JSON value of each may be


def v2_shape(spec: TensorSpec) -> list[int]:
    """The contract's shape with its dynamic (named) axes as -1, as v2 metadata writes them."""
    return [d if isinstance(d, int) else -1 for d in spec.shape]


def v2_tensor(spec: TensorSpec) -> dict[str, object]:
    return {"name": spec.name, "datatype": DATATYPES[spec.dtype], "shape": v2_shape(spec)}


def describe(specs: list[TensorSpec]) -> str:
    return ", ".join(f"{s.name} ({DATATYPES[s.dtype]} {v2_shape(s)})" for s in specs)


def read_inputs(
    request: InferRequest,
    specs: list[TensorSpec],
    outputs: list[TensorSpec],
    model: str,
    max_images: int,
) -> list[np.ndarray]:
    """The request's tensors as arrays in `specs` order, every rule checked before any is read."""
    given = {tensor.name: tensor for tensor in request.inputs}  # names are unique (schema)
    if unknown := [name for name in given if name not in {s.name for s in specs}]:
        raise InvalidInput(
            f"model {model!r} has no input {shown(unknown[0])}: it takes {describe(specs)}"
        )
    if missing := [s.name for s in specs if s.name not in given]:
        raise InvalidInput(
            f"missing input {missing[0]!r} for model {model!r}: it takes {describe(specs)}"
        )
    shapes = [_shape(given[spec.name], spec) for spec in specs]
    batches = {shape[0] for shape in shapes}
    if len(batches) > 1:
        sizes = ", ".join(f"{s.name} {shape[0]}" for s, shape in zip(specs, shapes, strict=True))
        raise InvalidInput(
            f"inputs disagree on the batch size, the first dimension of each shape ({sizes}): "
            "give one value (or row) per image in every input"
        )
    if (images := batches.pop()) > max_images:
        raise InvalidInput(
            f"a request of {images:,} images is more than this server takes at once "
            f"({max_images:,}, its --max-queue): split it into smaller requests"
        )
    known = [o.name for o in outputs]
    for wanted in request.request_outputs or ():
        if wanted.name not in known:
            raise InvalidInput(
                f"requested output {shown(wanted.name)} is not an output of model {model!r}: "
                f"it has {', '.join(known)}"
            )
    return [_read(given[spec.name], spec, shape) for spec, shape in zip(specs, shapes, strict=True)]


def _shape(tensor, spec: TensorSpec) -> list[int]:
    """The shape the tensor's values fill; a per-image scalar may also come as [B, 1]."""
    datatype = DATATYPES[spec.dtype]
    if tensor.datatype != datatype:
        raise InvalidInput(
            f"input {spec.name!r} has datatype {tensor.datatype}; it must be {datatype}"
        )
    shape, expected = list(tensor.shape), v2_shape(spec)
    # known_rows also comes as [B, 1]: that is how Triton's batching models take it, so one
    # client works against this server and a Triton repository alike.
    if len(expected) == 1 and len(shape) == 2 and shape[1] == 1:
        return shape
    fits = len(shape) == len(expected) and all(
        want in (-1, got) for got, want in zip(shape, expected, strict=True)
    )
    if not fits:
        raise InvalidInput(
            f"input {spec.name!r} has shape {shown(shape)}; it must be {expected}"
            + (" (or [-1, 1])" if len(expected) == 1 else "")
        )
    return shape


def _read(tensor, spec: TensorSpec, shape: list[int]) -> np.ndarray:
    """The tensor's values as an array of the spec's rank (a [B, 1] column becomes [B])."""
    datatype, dtype, count = DATATYPES[spec.dtype], np.dtype(spec.dtype), math.prod(shape)
    if tensor._raw_data is not None:
        raw = tensor._raw_data
        if len(raw) != count * dtype.itemsize:
            raise InvalidInput(
                f"input {spec.name!r} has {len(raw):,} bytes of binary data; shape {shape} of "
                f"{datatype} is {count * dtype.itemsize:,} bytes"
            )
        array = np.frombuffer(raw, dtype)
    else:
        values, kinds = _flat(tensor.data if tensor.data is not None else [], spec.name)
        if len(values) != count:
            raise InvalidInput(
                f"input {spec.name!r} has {len(values):,} values; shape {shape} holds {count:,} "
                "(all of them, row-major)"
            )
        if odd := kinds - JSON_TYPES[datatype]:
            example = next(v for v in values if type(v) in odd)
            what = shown(example) if type(example) is float else json_kind(example)
            rule = "numbers" if datatype == "FP32" else "integers within ±2**63, no fraction"
            raise InvalidInput(f"input {spec.name!r} holds {what}: {datatype} data are JSON {rule}")
        try:
            with np.errstate(over="ignore"):  # beyond FP32's range: infinite, refused below
                array = np.asarray(values, dtype)
        except OverflowError:
            raise InvalidInput(
                f"input {spec.name!r} has a value outside {datatype}'s range"
            ) from None
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int(array.size - np.isfinite(array).sum())
        raise InvalidInput(
            f"input {spec.name!r} has {bad:,} NaN or infinite values (or values beyond "
            f"{datatype}'s range)"
        )
    column = len(shape) != len(spec.shape)  # [B, 1] for a per-image scalar
    return array.reshape(-1) if column else array.reshape(shape)


def _flat(data: list, name: str) -> tuple[list, set[type]]:
    """JSON data, nested row by row or already flat, as one flat list and its values' types."""
    kinds = set(map(type, data))
    while list in kinds:
        if kinds != {list}:
            raise InvalidInput(f"input {name!r} mixes lists and values at one level of its data")
        data = [v for row in data for v in row]
        kinds = set(map(type, data))
    return data, kinds


def check_pixels(name: str, array: np.ndarray) -> None:
    if array.min() < 0 or array.max() > 1:
        raise InvalidInput(
            f"input {name!r} has values in [{array.min():.3g}, {array.max():.3g}]; pixels must "
            "be in [0, 1] (0 background, 1 object: divide 8-bit pixels by 255)"
        )


def check_known_rows(known_rows: np.ndarray) -> None:
    low, high = contract.KNOWN_ROWS_MIN, contract.KNOWN_ROWS_MAX
    bad = np.flatnonzero((known_rows < low) | (known_rows > high))
    if bad.size:
        i = int(bad[0])
        raise InvalidInput(
            f"known_rows[{i}] is {int(known_rows[i])}: each must be in {low}..{high} "
            "(how many top rows the model is given)"
        )


def check_sampling(noise_name: str, noise: np.ndarray, temperature: np.ndarray) -> None:
    """Noise (the input `noise_name`) within ±NOISE_LIMIT (standard normal draws) and
    temperatures in 0..MAX_TEMPERATURE: with both bounded the sample is finite (noise 3.4e38 at
    temperature 2 overflows)."""
    if (top := float(np.abs(noise).max())) > NOISE_LIMIT:
        raise InvalidInput(
            f"input {noise_name!r} reaches {top:.3g}: it holds standard normal draws, each "
            f"within ±{NOISE_LIMIT:g} (scale the spread with temperature)"
        )
    bad = np.flatnonzero((temperature < 0) | (temperature > MAX_TEMPERATURE))
    if bad.size:
        i = int(bad[0])
        raise InvalidInput(
            f"temperature[{i}] is {float(temperature[i]):g}: each must be in "
            f"0..{MAX_TEMPERATURE:g} (0: deterministic, 1: the model's own distribution)"
        )


def check_held(kind_name: str, kind: np.ndarray, known_name: str, known: np.ndarray) -> None:
    """sample_step's held class: `kind` holds class probabilities (zeros at the top of the
    image), each in [0, 1]; `row_known` says whether the row read is known, exactly 0 or 1."""
    if kind.size and (kind.min() < 0 or kind.max() > 1):
        raise InvalidInput(
            f"input {kind_name!r} has values in [{kind.min():.3g}, {kind.max():.3g}]: it is the "
            f"class vector a previous call returned as {kind_name + '_out'!r} (zeros at the top "
            "of the image), each value in [0, 1]"
        )
    bad = np.flatnonzero((known != 0) & (known != 1))
    if bad.size:
        i = int(bad[0])
        raise InvalidInput(
            f"{known_name}[{i}] is {float(known[i]):g}: each must be 1 (the row sent is a known "
            "row) or 0 (it is a row the model drew)"
        )


def check_outputs(model: str, specs: list[TensorSpec], arrays: list[np.ndarray]) -> None:
    """Refuse to answer NaN or infinity: inputs far outside what the model knows can give them."""
    for spec, array in zip(specs, arrays, strict=True):
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise InvalidInput(
                f"model {model!r} computed NaN or infinite {spec.name!r} for these inputs (values "
                "far outside what it was trained on): no answer is given; send values in the "
                "ranges the model's metadata and its own outputs show"
            )
