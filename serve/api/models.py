"""A bundle as Open Inference Protocol (KServe v2) models: `kserve.Model` subclasses.

Torch-free. `<bundle>` runs `complete.onnx` through a `MicroBatcher`, `<bundle>_step` runs
`step.onnx` as it is (the client carries the state), and a sampling bundle's `<bundle>_sample`
runs `sample.onnx` (the client sends the noise, so a sample is reproducible anywhere) and its
`<bundle>_sample_step` runs `sample_step.onnx` (state and noise from the client, one row a
call). Names, datatypes and shapes come from `rowgen.contract`. Every model checks a request the
same way before it runs anything (serve.api.inputs: names, types, shapes, at most `max_queue`
images, then values), and answers only finite outputs; a bad request is an `InvalidInput` (400
over REST, INVALID_ARGUMENT over gRPC) naming the tensor and the fix. A full queue is
`Overloaded` (503, UNAVAILABLE). Served by `python -m serve.api` (`make api`) and
`python -m serve.ray_app`.
"""

from __future__ import annotations

import asyncio
from typing import ClassVar

import numpy as np
from prometheus_client import Histogram

from rowgen import contract
from rowgen.contract import TensorSpec
from serve.api.inputs import (
    DATATYPES,
    check_held,
    check_known_rows,
    check_outputs,
    check_pixels,
    check_sampling,
    read_inputs,
    v2_tensor,
)
from serve.api.protocol import (
    InferOutput,
    InferRequest,
    InferResponse,
    Overloaded,
    kserve,
)
from serve.batching import BatchSettings, MicroBatcher, QueueFull
from serve.runtime import OrtModel

DEFAULT_BATCHING = BatchSettings()
BATCH_IMAGES = Histogram(
    "rowgen_batch_images",
    "Images in the onnxruntime call that served each complete request",
    ["model_name"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)


def respond(request: InferRequest, model: str, specs: list[TensorSpec], arrays, **params):
    """An InferResponse with `arrays` as the `specs` outputs, binary where the request asked;
    InvalidInput if any output is not finite.

    The outputs hold raw bytes: kserve's gRPC encoder fails on numpy data, and its REST encoder
    turns raw bytes into a JSON list only when the request did not ask for binary.
    """
    check_outputs(model, specs, arrays)
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
    """A v2 model that runs one of the contract's programs (`program`) on a bundle, with that
    program's inputs and outputs as its metadata, taking at most `batching.max_queue` images a
    request. Loading opens the program's session, so the first request does not wait for it."""

    program: ClassVar[str]

    def __init__(self, name: str, model: OrtModel, batching: BatchSettings) -> None:
        super().__init__(name)
        self.inputs, self.outputs = contract.program_specs(self.program, model.config)
        self.max_images = batching.max_queue
        self.model = model

    def load(self) -> bool:
        self.model.prepare(self.program)
        self.ready = True
        return self.ready

    def read(self, request: InferRequest) -> list[np.ndarray]:
        """The request's inputs, checked (serve.api.inputs), in the contract's order."""
        return read_inputs(request, self.inputs, self.outputs, self.name, self.max_images)

    def get_input_types(self) -> list[dict]:
        return [v2_tensor(s) for s in self.inputs]

    def get_output_types(self) -> list[dict]:
        return [v2_tensor(s) for s in self.outputs]


class CompleteModel(ContractModel):
    """`<bundle>`: image FP32 [-1, 28, 28] + known_rows INT64 [-1] -> completed, batched."""

    program = contract.COMPLETE_ONNX

    def __init__(self, name: str, model: OrtModel, batching: BatchSettings) -> None:
        super().__init__(name, model, batching)
        self.batcher = MicroBatcher(model.complete, batching)

    async def predict(self, payload: InferRequest, headers: dict | None = None) -> InferResponse:
        image, known_rows = self.read(payload)
        check_pixels(self.inputs[0].name, image)
        check_known_rows(known_rows)
        try:
            completed, batch = await self.batcher.submit(image, known_rows)
        except QueueFull as exc:
            raise Overloaded(str(exc)) from None
        BATCH_IMAGES.labels(model_name=self.name).observe(batch)
        return respond(payload, self.name, self.outputs, [completed], batch_images=batch)


class StepModel(ContractModel):
    """`<bundle>_step`: one `step.onnx` call; the state comes in and goes back out."""

    program = contract.STEP_ONNX

    async def predict(self, payload: InferRequest, headers: dict | None = None) -> InferResponse:
        row, *state = self.read(payload)
        check_pixels(self.inputs[0].name, row)
        outputs = await asyncio.to_thread(self.model.step, row, *state)
        return respond(payload, self.name, self.outputs, outputs)


class SampleModel(ContractModel):
    """`<bundle>_sample`: one `sample.onnx` call; the noise comes in the request."""

    program = contract.SAMPLE_ONNX

    async def predict(self, payload: InferRequest, headers: dict | None = None) -> InferResponse:
        image, known_rows, noise, temperature = self.read(payload)
        check_pixels(self.inputs[0].name, image)
        check_known_rows(known_rows)
        check_sampling(self.inputs[2].name, noise, temperature)
        completed = await asyncio.to_thread(
            self.model.sample, image, known_rows, noise, temperature
        )
        return respond(payload, self.name, self.outputs, [completed])


class SampleStepModel(ContractModel):
    """`<bundle>_sample_step`: one `sample_step.onnx` call, a sampled row; the state and this
    row's noise come in, the state goes back out, as `<bundle>_step` does for the mean."""

    program = contract.SAMPLE_STEP_ONNX

    async def predict(self, payload: InferRequest, headers: dict | None = None) -> InferResponse:
        row, *rest = self.read(payload)
        held = len(self.outputs) - 1  # the state: h[, c][, kind], as many as come back out
        state, (*known, noise_row, temperature) = rest[:held], rest[held:]
        check_pixels(self.inputs[0].name, row)
        check_sampling(self.inputs[-2].name, noise_row, temperature)
        if known:  # a head that holds a class: kind is the last of the state
            check_held(self.inputs[held].name, state[-1], self.inputs[held + 1].name, known[0])
        outputs = await asyncio.to_thread(
            self.model.sample_step, row, *state, *known, noise_row, temperature
        )
        return respond(payload, self.name, self.outputs, outputs)


# The v2 model class that serves each program of the contract.
MODEL_CLASSES = {
    cls.program: cls for cls in (CompleteModel, StepModel, SampleModel, SampleStepModel)
}


def bundle_models(model: OrtModel, batching: BatchSettings = DEFAULT_BATCHING) -> list:
    """The v2 models of one bundle, one per contract.serving_names entry, loaded."""
    names = contract.serving_names(model.name, model.config)
    models = [MODEL_CLASSES[program](name, model, batching) for name, program in names.items()]
    for m in models:
        m.load()
    return models
