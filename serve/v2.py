"""A bundle as Open Inference Protocol (KServe v2) models: `kserve.Model` subclasses.

Torch-free. `<bundle>` runs `complete.onnx` through a `MicroBatcher`, `<bundle>_step` runs
`step.onnx` as it is (the client carries the state), and a sampling bundle's `<bundle>_sample`
runs `sample.onnx` (the client sends the noise, so a sample is reproducible anywhere). Names,
datatypes and shapes come from `rowgen.contract`; every input is checked and a bad one is an
`InvalidInput` (400 over REST, INVALID_ARGUMENT over gRPC) naming the tensor and the fix. A
full queue is `Overloaded` (503, UNAVAILABLE). Served by `python -m serve.api` (`make api`) and
`python -m serve.ray_app`.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from types import ModuleType

import numpy as np
from grpc import StatusCode
from grpc_interceptor.exceptions import GrpcException
from prometheus_client import Histogram

from rowgen import contract
from rowgen.contract import TensorSpec
from rowgen.sampling import MAX_TEMPERATURE
from serve.batching import BatchSettings, MicroBatcher, QueueFull
from serve.runtime import OrtModel


def import_kserve() -> ModuleType:
    """kserve, imported with an empty command line: its model_server module parses sys.argv at
    import time and would otherwise take our flags (or a test runner's) as its own."""
    argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        return importlib.import_module("kserve")
    finally:
        sys.argv = argv


kserve = import_kserve()
InvalidInput = kserve.errors.InvalidInput
InferRequest, InferResponse, InferOutput = (
    kserve.InferRequest,
    kserve.InferResponse,
    kserve.InferOutput,
)

DEFAULT_BATCHING = BatchSettings()
DATATYPES = {"float32": "FP32", "int64": "INT64"}  # contract dtype -> v2 datatype
BATCH_IMAGES = Histogram(
    "rowgen_batch_images",
    "Images in the onnxruntime call that served each complete request",
    ["model_name"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)


class Overloaded(GrpcException):
    """The server's queue is full: REST answers 503 with Retry-After, gRPC UNAVAILABLE."""

    status_code = StatusCode.UNAVAILABLE


def step_model_name(bundle: str) -> str:
    return bundle + contract.STEP_MODEL_SUFFIX


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


def respond(request: InferRequest, model: str, specs: list[TensorSpec], arrays, **params):
    """An InferResponse with `arrays` as the `specs` outputs, binary where the request asked.

    The outputs hold raw bytes: kserve's gRPC encoder fails on numpy data, and its REST encoder
    turns raw bytes into a JSON list only when the request did not ask for binary.
    """
    outputs = []
    for spec, array in zip(specs, arrays, strict=True):
        output = InferOutput(spec.name, list(array.shape), DATATYPES[spec.dtype])
        output.set_data_from_numpy(np.ascontiguousarray(array), binary_data=True)
        outputs.append(output)
    return InferResponse(
        response_id=request.id or "",
        model_name=model,
        infer_outputs=outputs,
        parameters=params or None,
        use_binary_outputs=request.use_binary_outputs,
        requested_outputs=request.request_outputs,
    )


class ContractModel(kserve.Model):
    """A v2 model whose metadata is one of the contract's programs."""

    def __init__(self, name: str, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> None:
        super().__init__(name)
        self.inputs, self.outputs = inputs, outputs

    def get_input_types(self) -> list[dict]:
        return [v2_tensor(s) for s in self.inputs]

    def get_output_types(self) -> list[dict]:
        return [v2_tensor(s) for s in self.outputs]


class CompleteModel(ContractModel):
    """`<bundle>`: image FP32 [-1, 28, 28] + known_rows INT64 [-1] -> completed, batched."""

    def __init__(self, model: OrtModel, batching: BatchSettings = DEFAULT_BATCHING) -> None:
        super().__init__(model.name, contract.complete_inputs(), contract.complete_outputs())
        self.model = model
        self.batcher = MicroBatcher(model.complete, batching)

    def load(self) -> bool:
        _ = self.model.complete_session  # open complete.onnx now, not at the first request
        self.ready = True
        return self.ready

    async def predict(self, payload: InferRequest, headers: dict | None = None) -> InferResponse:
        image, known_rows = read_inputs(payload, self.inputs, self.name)
        check_pixels(self.inputs[0].name, image)
        check_known_rows(known_rows)
        if len(image) > (limit := self.batcher.settings.max_queue):
            raise InvalidInput(
                f"a request of {len(image)} images is more than this server takes at once "
                f"({limit}, its --max-queue): split it into smaller requests"
            )
        try:
            completed, batch = await self.batcher.submit(image, known_rows)
        except QueueFull as exc:
            raise Overloaded(str(exc)) from None
        BATCH_IMAGES.labels(model_name=self.name).observe(batch)
        return respond(payload, self.name, self.outputs, [completed], batch_images=batch)


class StepModel(ContractModel):
    """`<bundle>_step`: one `step.onnx` call; the state comes in and goes back out."""

    def __init__(self, model: OrtModel) -> None:
        specs = contract.step_inputs(model.config), contract.step_outputs(model.config)
        super().__init__(step_model_name(model.name), *specs)
        self.model = model

    def load(self) -> bool:
        self.ready = True
        return self.ready

    async def predict(self, payload: InferRequest, headers: dict | None = None) -> InferResponse:
        row, *state = read_inputs(payload, self.inputs, self.name)
        check_pixels(self.inputs[0].name, row)
        outputs = await asyncio.to_thread(self.model.step, row, *state)
        return respond(payload, self.name, self.outputs, outputs)


class SampleModel(ContractModel):
    """`<bundle>_sample`: one `sample.onnx` call; the noise comes in the request."""

    def __init__(self, model: OrtModel) -> None:
        specs = contract.sample_inputs(model.config.noise_dim), contract.sample_outputs()
        super().__init__(model.name + contract.SAMPLE_MODEL_SUFFIX, *specs)
        self.model = model

    def load(self) -> bool:
        _ = self.model.sample_session  # open sample.onnx now, not at the first request
        self.ready = True
        return self.ready

    async def predict(self, payload: InferRequest, headers: dict | None = None) -> InferResponse:
        image, known_rows, noise, temperature = read_inputs(payload, self.inputs, self.name)
        check_pixels(self.inputs[0].name, image)
        check_known_rows(known_rows)
        bad = np.flatnonzero((temperature < 0) | (temperature > MAX_TEMPERATURE))
        if bad.size:
            i = int(bad[0])
            raise InvalidInput(
                f"temperature[{i}] is {float(temperature[i]):g}: each must be in "
                f"0..{MAX_TEMPERATURE:g} (0: deterministic, 1: the model's own distribution)"
            )
        completed = await asyncio.to_thread(
            self.model.sample, image, known_rows, noise, temperature
        )
        return respond(payload, self.name, self.outputs, [completed])


def bundle_models(model: OrtModel, batching: BatchSettings = DEFAULT_BATCHING) -> list:
    """The v2 models of one bundle (contract.serving_names), loaded."""
    models = [CompleteModel(model, batching), StepModel(model)]
    if model.config.stochastic:
        models.append(SampleModel(model))
    assert [m.name for m in models] == list(contract.serving_names(model.name, model.config))
    for m in models:
        m.load()
    return models
