"""Runtime agreement of a bundle's sampling programs on the test split, for `make eval`.

The same noise (rowgen.sampling.draw_noise, seed 0) and temperature 1 go to eager PyTorch
(training.latent.sample, the reference), sample.onnx and sample.ts, and to sample_step.onnx
driven row by row (rowgen.stepping.sample_by_steps) in onnxruntime, all on the whole split; the
ONNX reference evaluator, a pure-numpy interpreter, drives sample_step.onnx on the first
REFERENCE_IMAGES only. Each figure is the largest |runtime - eager| over every pixel: the contract
asks for SAMPLE_TOLERANCE on whole completions. Beside them, on the whole split: sample_step.onnx
for one step from eager's own row and state at every row (STEP_TOLERANCE: nothing fed back), and
eager PyTorch in float32 against the same model in float64, how far float32 rounding alone moves
a sampled completion.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import onnx.reference
import torch

from export.validate_sample import eager_step, one_step_gaps
from rowgen import contract, sessions
from rowgen.bundle import Bundle
from rowgen.sampling import draw_noise
from rowgen.stepping import sample_by_steps
from training.checkpoint import load_weights
from training.latent import sample

REFERENCE_IMAGES = 200
NOISE_SEED = 0


def _stepper(session, names: list[str]) -> Callable[..., list[np.ndarray]]:
    """A program (onnxruntime session or reference evaluator) called with positional inputs."""
    return lambda *inputs: session.run(None, dict(zip(names, inputs, strict=True)))


def runtime_gaps(bundle: Bundle, images: np.ndarray, k: int, batch: int = 1000) -> dict:
    """Largest |runtime - eager PyTorch| per sampling runtime, same noise, temperature 1."""
    model = load_weights(bundle.file(contract.WEIGHTS))
    config = model.config
    whole = sessions.open_session(bundle.file(contract.SAMPLE_ONNX))
    whole_names = [s.name for s in contract.sample_inputs(config.noise_dim)]
    step_names = [s.name for s in contract.sample_step_inputs(config)]
    whole = _stepper(whole, whole_names)
    stepper = _stepper(sessions.open_session(bundle.file(contract.SAMPLE_STEP_ONNX)), step_names)
    scripted = torch.jit.load(str(bundle.file(contract.SAMPLE_TS)))
    eager, wide = eager_step(model), copy.deepcopy(model).double()
    out_names = [s.name for s in contract.sample_step_outputs(config)]
    noise = draw_noise(NOISE_SEED, len(images), config.noise_dim)
    one_step = f"{contract.SAMPLE_STEP_ONNX} one step from eager's row and state"
    rounding = "eager float32 vs float64"
    worst = dict.fromkeys(
        [contract.SAMPLE_ONNX, contract.SAMPLE_TS, f"{contract.SAMPLE_STEP_ONNX} driven"], 0.0
    ) | {one_step: 0.0, rounding: 0.0}
    for f in range(0, len(images), batch):
        part = slice(f, f + batch)
        n = len(images[part])
        inputs = (images[part], np.full(n, k, np.int64), noise[part], np.ones(n, np.float32))
        tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in inputs]
        with torch.no_grad():
            want = sample(model, *tensors).numpy()
            got = {
                contract.SAMPLE_ONNX: whole(*inputs)[0],
                contract.SAMPLE_TS: scripted(*tensors).numpy(),
                f"{contract.SAMPLE_STEP_ONNX} driven": sample_by_steps(stepper, config, *inputs),
            }
            exact = sample(wide, *(t.double() if t.is_floating_point() else t for t in tensors))
        for name, values in got.items():
            worst[name] = max(worst[name], float(np.abs(values - want).max()))
        worst[rounding] = max(worst[rounding], float((exact - torch.from_numpy(want)).abs().max()))
        gaps: dict[str, float] = {}
        sample_by_steps(one_step_gaps(eager, stepper, out_names, gaps), config, *inputs)
        worst[one_step] = max(worst[one_step], *gaps.values())
    reference = onnx.reference.ReferenceEvaluator(str(bundle.file(contract.SAMPLE_STEP_ONNX)))
    n = min(REFERENCE_IMAGES, len(images))
    inputs = (images[:n], np.full(n, k, np.int64), noise[:n], np.ones(n, np.float32))
    with torch.no_grad():
        want = sample(model, *(torch.from_numpy(np.ascontiguousarray(a)) for a in inputs))
    by_reference = sample_by_steps(_stepper(reference, step_names), config, *inputs)
    label = f"{contract.SAMPLE_STEP_ONNX} in the reference evaluator (first {n})"
    worst[label] = float(np.abs(by_reference - want.numpy()).max())
    return worst
