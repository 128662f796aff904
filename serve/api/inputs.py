"""The tensors of a v2 inference request, read and checked against the contract. Torch-free.

Every problem is an `InvalidInput` (400 over REST, INVALID_ARGUMENT over gRPC) naming the tensor
and the fix: an unknown, missing or repeated input, a wrong datatype or shape, data that does not
fill its shape, NaN or infinite values, pixels outside [0, 1], known_rows outside 1..27. Used by
the models of serve.api.models.
"""

from __future__ import annotations

import numpy as np

from rowgen import contract
from rowgen.contract import TensorSpec
from serve.api.protocol import InferRequest, InvalidInput

DATATYPES = {"float32": "FP32", "int64": "INT64"}  # contract dtype -> v2 datatype


def v2_shape(spec: TensorSpec) -> list[int]:
    """The contract's shape with its dynamic (named) axes as -1, as v2 metadata writes them."""
    return [d if isinstance(d, int) else -1 for d in spec.shape]


def v2_tensor(spec: TensorSpec) -> dict[str, object]:
    return {"name": spec.name, "datatype": DATATYPES[spec.dtype], "shape": v2_shape(spec)}


def describe(specs: list[TensorSpec]) -> str:
    return ", ".join(f"{s.name} ({DATATYPES[s.dtype]} {v2_shape(s)})" for s in specs)


def read_inputs(request: InferRequest, specs: list[TensorSpec], model: str) -> list[np.ndarray]:
    """The request's tensors as arrays in `specs` order, each checked against its spec."""
    given: dict[str, object] = {}
    for tensor in request.inputs:
        if tensor.name in given:
            raise InvalidInput(f"input {tensor.name!r} is given twice; send each input once")
        given[tensor.name] = tensor
    wanted = {s.name for s in specs}
    if unknown := sorted(set(given) - wanted):
        raise InvalidInput(
            f"model {model!r} has no input {', '.join(map(repr, unknown))}: "
            f"it takes {describe(specs)}"
        )
    arrays = []
    for spec in specs:
        tensor = given.get(spec.name)
        if tensor is None:
            raise InvalidInput(
                f"missing input {spec.name!r} for model {model!r}: it takes {describe(specs)}"
            )
        arrays.append(_read_tensor(tensor, spec))
    batches = {a.shape[0] for a in arrays}
    if len(batches) > 1:
        sizes = ", ".join(f"{s.name} {a.shape[0]}" for s, a in zip(specs, arrays, strict=True))
        raise InvalidInput(f"inputs disagree on the batch size ({sizes}): give one per image")
    if batches == {0}:
        raise InvalidInput("the batch is empty: send at least one image")
    return arrays


def _read_tensor(tensor, spec: TensorSpec) -> np.ndarray:
    datatype = DATATYPES[spec.dtype]
    if tensor.datatype != datatype:
        raise InvalidInput(
            f"input {spec.name!r} has datatype {tensor.datatype}; it must be {datatype}"
        )
    shape, expected = list(tensor.shape), v2_shape(spec)
    # A per-image scalar (known_rows) also comes as [B, 1]: that is how Triton's batching models
    # take it, so one client works against this server and a Triton repository alike.
    column = len(expected) == 1 and len(shape) == 2 and shape[1] == 1
    fits = column or (
        len(shape) == len(expected)
        and all(want in (-1, got) for got, want in zip(shape, expected, strict=True))
    )
    if not fits:
        raise InvalidInput(
            f"input {spec.name!r} has shape {shape}; it must be {expected}"
            + (" (or [-1, 1])" if len(expected) == 1 else "")
        )
    try:
        array = tensor.as_numpy()
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(
            f"input {spec.name!r}: its data does not fill shape {shape} as {datatype} "
            f"(a truncated body or a wrong element count): {exc}"
        ) from None
    if column:
        array = array.reshape(-1)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int(np.size(array) - np.isfinite(array).sum())
        raise InvalidInput(f"input {spec.name!r} has {bad} NaN or infinite values")
    return array


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
