"""Parity of `sample.onnx`, `sample.ts` and `sample_step.onnx`, run on every export of a
sampling model.

Two checks, for batches 1, 3, 64, prompts of 1..27 rows, temperatures 0, 1 and mixed (negative
included):
- one step: sample_step.onnx, given the row, state, noise row and temperature that eager PyTorch
  (export.programs.SampleStep) reads at every row of a completion, must give eager's drawn row
  and state within the contract's STEP_TOLERANCE, in onnxruntime and in the ONNX reference
  evaluator. Nothing is fed back, so this is each program's own arithmetic.
- whole completions: the same image, known_rows, noise and temperature must give the same
  completion in eager PyTorch (training.latent.sample), TorchScript, onnxruntime and the reference
  evaluator, and sample_step.onnx driven row by row (rowgen.stepping.sample_by_steps) must equal
  sample.onnx, within SAMPLE_TOLERANCE: each drawn row is fed back, so rounding grows along the
  completion (rowgen.contract says why and how far). Known rows must be copied bit for bit.
Neither head makes a discrete choice (a flow head integrates a smooth field, a cvae head decodes
a continuous z): nothing can flip between runtimes.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import onnx.reference
import onnxruntime as ort
import torch

from export.errors import ParityError
from export.programs import SampleStep
from export.validate import BATCHES, _max_diffs, random_images
from export.writers import quiet_exporters
from rowgen import contract
from rowgen.stepping import sample_by_steps
from training.latent import sample
from training.model import RowGenerator

REFERENCE_CASE = "batch 3, mixed known_rows and temperature"
STEPS = "sample_step.onnx driven row by row vs sample.onnx"
STEPS_REF = "sample_step.onnx driven row by row in ReferenceEvaluator vs eager"
ONE_STEP = "sample_step.onnx, one step from eager's row and state"
ONE_STEP_REF = ONE_STEP + " in ReferenceEvaluator"


def sample_cases(
    images: torch.Tensor, noise_dim: int, seed: int = 0
) -> list[tuple[str, tuple[torch.Tensor, ...]]]:
    """(case, (image, known_rows, noise, temperature)) for every batch size."""
    gen = torch.Generator().manual_seed(seed)
    cases = []
    for b in BATCHES:
        batch = images[:b]
        mixed_k = torch.tensor([1, 7, 14, 27, 0, 40], dtype=torch.long).repeat(b)[:b]
        mixed_t = torch.tensor([0.0, 0.5, 1.0, 2.0, -1.0]).repeat(b)[:b]
        for name, known, temperature in (
            (f"batch {b}, known_rows 1, temperature 1", torch.full((b,), 1), torch.ones(b)),
            (f"batch {b}, known_rows 14, temperature 0", torch.full((b,), 14), torch.zeros(b)),
            (f"batch {b}, known_rows 7, temperature 1", torch.full((b,), 7), torch.ones(b)),
            (f"batch {b}, mixed known_rows and temperature", mixed_k, mixed_t),
        ):
            noise = torch.randn(b, contract.SAMPLE_STEPS, noise_dim, generator=gen)
            cases.append((name, (batch, known, noise, temperature)))
    return cases


def _feed(inputs: tuple[torch.Tensor, ...], noise_dim: int) -> dict[str, np.ndarray]:
    names = [s.name for s in contract.sample_inputs(noise_dim)]
    return {n: t.numpy() for n, t in zip(names, inputs, strict=True)}


StepFn = Callable[..., list[np.ndarray]]


def one_step_gaps(
    eager: StepFn, other: StepFn, names: list[str], worst: dict[str, float]
) -> StepFn:
    """A step function for rowgen.stepping that calls `eager` and `other` on the same inputs,
    keeps the largest |other - eager| per output in `worst` (NaN once any step gave one), and goes
    on with eager's outputs: driven over a completion, every step of `other` starts from eager's
    row and state."""

    def step(*inputs: np.ndarray) -> list[np.ndarray]:
        want, got = eager(*inputs), other(*inputs)
        for name, a, b in zip(names, got, want, strict=True):
            diff = np.max(np.abs(np.asarray(a, np.float64) - b))
            worst[name] = float(np.maximum(worst.get(name, 0.0), diff))  # NaN stays NaN
        return want

    return step


def eager_step(model: RowGenerator) -> StepFn:
    """sample_step.onnx's computation in eager PyTorch, on numpy arrays."""
    program = SampleStep(model).eval()

    def step(*inputs: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            return [t.numpy() for t in program(*(torch.from_numpy(a) for a in inputs))]

    return step


def validate_sample(folder: Path, model: RowGenerator, images: torch.Tensor | None = None) -> dict:
    """Check sample.onnx, sample.ts and sample_step.onnx in `folder` against `model`; return
    the worst diffs."""
    model = model.eval()
    config = model.config
    noise_dim = config.noise_dim
    session = ort.InferenceSession(
        str(folder / contract.SAMPLE_ONNX), providers=["CPUExecutionProvider"]
    )
    with quiet_exporters():
        scripted = torch.jit.load(str(folder / contract.SAMPLE_TS))
    stepper = ort.InferenceSession(
        str(folder / contract.SAMPLE_STEP_ONNX), providers=["CPUExecutionProvider"]
    )
    step_names = [s.name for s in contract.sample_step_inputs(config)]
    out_names = [s.name for s in contract.sample_step_outputs(config)]
    eager = eager_step(model)

    def run_step(session, *inputs: np.ndarray) -> list[np.ndarray]:
        return session.run(None, dict(zip(step_names, inputs, strict=True)))

    images = random_images() if images is None else images
    tol, step_tol = contract.SAMPLE_TOLERANCE, contract.STEP_TOLERANCE
    worst: dict[str, dict[str, float]] = {"onnx": {}, "ts": {}, "ref": {}, "steps": {}}
    worst |= {"steps_ref": {}, "one": {}, "one_ref": {}}
    cases = sample_cases(images, noise_dim)
    with torch.no_grad():
        for case, inputs in cases:
            arrays = [t.numpy() for t in inputs]
            one: dict[str, float] = {}
            sample_by_steps(
                one_step_gaps(eager, partial(run_step, stepper), out_names, one), config, *arrays
            )
            _check_gaps(ONE_STEP, case, one, step_tol, worst["one"])
            want = sample(model, *inputs).numpy()
            got = session.run(None, _feed(inputs, noise_dim))[0]
            _max_diffs(contract.SAMPLE_ONNX, case, ["completed"], [got], [want], tol, worst["onnx"])
            got_ts = scripted(*inputs).numpy()
            _max_diffs(contract.SAMPLE_TS, case, ["completed"], [got_ts], [want], tol, worst["ts"])
            by_steps = sample_by_steps(partial(run_step, stepper), config, *arrays)
            _max_diffs(STEPS, case, ["completed"], [by_steps], [got], tol, worst["steps"])
            image, known = arrays[0], arrays[1]
            k = np.clip(known, contract.KNOWN_ROWS_MIN, contract.KNOWN_ROWS_MAX)
            known_part = np.arange(contract.IMAGE_SIZE)[None, :] < k[:, None]  # (B, 28)
            if not np.array_equal(got[known_part], image[known_part]):
                diff = float(np.abs(got - image)[known_part].max())
                raise ParityError(
                    contract.SAMPLE_ONNX, "completed", case + " (known rows)", diff, 0
                )
        case, inputs = next(c for c in cases if c[0] == REFERENCE_CASE)
        reference = onnx.reference.ReferenceEvaluator(str(folder / contract.SAMPLE_ONNX))
        ref = reference.run(None, _feed(inputs, noise_dim))[0]
        want = sample(model, *inputs).numpy()
        _max_diffs(
            "sample.onnx in ReferenceEvaluator",
            case,
            ["completed"],
            [ref],
            [want],
            tol,
            worst["ref"],
        )
        reference_step = onnx.reference.ReferenceEvaluator(str(folder / contract.SAMPLE_STEP_ONNX))
        arrays = [t.numpy() for t in inputs]
        by_ref = sample_by_steps(partial(run_step, reference_step), config, *arrays)
        _max_diffs(STEPS_REF, case, ["completed"], [by_ref], [want], tol, worst["steps_ref"])
        one = {}
        sample_by_steps(
            one_step_gaps(eager, partial(run_step, reference_step), out_names, one),
            config,
            *arrays,
        )
        _check_gaps(ONE_STEP_REF, case, one, step_tol, worst["one_ref"])
    return {
        contract.SAMPLE_ONNX: {"vs": "eager", "max_abs_diff": worst["onnx"], "tol": tol},
        contract.SAMPLE_TS: {"vs": "eager", "max_abs_diff": worst["ts"], "tol": tol},
        "sample_reference_evaluator": {"case": case, "max_abs_diff": worst["ref"], "tol": tol},
        contract.SAMPLE_STEP_ONNX: {"vs": STEPS, "max_abs_diff": worst["steps"], "tol": tol},
        "sample_step_reference_evaluator": {
            "vs": STEPS_REF,
            "case": case,
            "max_abs_diff": worst["steps_ref"],
            "tol": tol,
        },
        "sample_step_one_step": {"vs": ONE_STEP, "max_abs_diff": worst["one"], "tol": step_tol},
        "sample_step_one_step_reference_evaluator": {
            "vs": ONE_STEP_REF,
            "case": case,
            "max_abs_diff": worst["one_ref"],
            "tol": step_tol,
        },
    }


def _check_gaps(
    program: str, case: str, gaps: dict[str, float], tol: float, worst: dict[str, float]
) -> None:
    """Keep each output's largest gap in `worst`; raise ParityError past `tol`."""
    for name, diff in gaps.items():
        worst[name] = max(worst.get(name, 0.0), diff)
        if not diff <= tol:  # also catches NaN
            raise ParityError(program, name, case, diff, tol)
