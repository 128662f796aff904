"""Parity checks run on every export: ONNX vs eager PyTorch vs TorchScript, and more.

- step.onnx / step.ts vs the eager model, batches 1, 3, 64, zero and random state (<= 1e-5);
- complete.onnx / complete.ts vs eager completion, known_rows 1, 7, 14, 27 and a mixed batch
  (<= 1e-4);
- complete.onnx vs driving step.onnx row by row from numpy;
- complete.onnx on one batch through onnx.reference.ReferenceEvaluator (the ONNX spec itself).
Any miss raises ParityError naming the program, tensor, case and difference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx.reference
import onnxruntime as ort
import torch

from export.errors import ParityError
from export.writers import quiet_exporters
from rowgen import contract
from rowgen.stepping import complete_by_steps
from training.model import RowGenerator, complete

BATCHES = (1, 3, 64)
KNOWN_ROWS_CASES = (1, 7, 14, 27)
MIXED_3 = "batch 3, mixed"  # the case also run through the ONNX reference evaluator


def eager_step(model: RowGenerator, row: torch.Tensor, *state: torch.Tensor) -> list[torch.Tensor]:
    """The contract's step computed with the model's own nn.LSTM/GRU/RNN (batch-first state)."""
    if model.config.mode == "window":
        window = torch.cat([state[0][:, 1:], row[:, None]], 1)  # (B, 14, 28)
        return [model.predict_window(window).clamp(0.0, 1.0), window]
    torch_state = tuple(s.transpose(0, 1).contiguous() for s in state)  # (L, B, H)
    out, new = model(row[:, None], torch_state if len(torch_state) == 2 else torch_state[0])
    new = new if isinstance(new, tuple) else (new,)
    return [out[:, 0].clamp(0.0, 1.0), *(s.transpose(0, 1) for s in new)]


def step_cases(model: RowGenerator, seed: int = 0) -> list[tuple[str, list[torch.Tensor]]]:
    gen = torch.Generator().manual_seed(seed)
    cases = []
    for b in BATCHES:
        for kind in ("zero", "random"):
            inputs = []
            for spec in contract.step_inputs(model.config):
                shape = [b if d == contract.BATCH else d for d in spec.shape]
                t = torch.rand(shape, generator=gen)  # rows and windows: pixels in [0, 1]
                if spec.name != "row":
                    t = t * 0 if kind == "zero" else (t * 2 - 1 if spec.name != "window" else t)
                inputs.append(t)
            cases.append((f"batch {b}, {kind} state", inputs))
    return cases


def complete_cases(images: torch.Tensor) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    cases = []
    for b in BATCHES:
        batch = images[:b]
        for k in KNOWN_ROWS_CASES:
            cases.append((f"batch {b}, known_rows {k}", batch, torch.full((b,), k)))
        mixed = torch.tensor([1, 7, 14, 27, 0, 40], dtype=torch.long).repeat(b)[:b]
        cases.append((f"batch {b}, mixed known_rows (clamped too)", batch, mixed))
    return cases


def _max_diffs(
    program: str,
    case: str,
    names: list[str],
    got: list,
    want: list,
    tolerance: float,
    worst: dict[str, float],
) -> None:
    for name, a, b in zip(names, got, want, strict=True):
        if np.shape(a) != np.shape(b):
            raise ParityError(
                program,
                name,
                f"{case}: shape {np.shape(a)} vs {np.shape(b)}",
                float("inf"),
                tolerance,
            )
        diff = float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
        worst[name] = max(worst.get(name, 0.0), diff)
        if not diff <= tolerance:  # also catches NaN
            raise ParityError(program, name, case, diff, tolerance)


def random_images() -> torch.Tensor:
    """The images the checks use when no real ones are given: pixels in [0, 1], fixed seed."""
    size = contract.IMAGE_SIZE
    return torch.rand(max(BATCHES), size, size, generator=torch.Generator().manual_seed(1))


def validate(folder: Path, model: RowGenerator, images: torch.Tensor | None = None) -> dict:
    """Check the bundle files in `folder` against `model`; return the worst differences found."""
    model = model.eval()
    config = model.config
    cpu = ["CPUExecutionProvider"]
    step_onnx = ort.InferenceSession(str(folder / contract.STEP_ONNX), providers=cpu)
    complete_onnx = ort.InferenceSession(str(folder / contract.COMPLETE_ONNX), providers=cpu)
    with quiet_exporters():
        step_ts = torch.jit.load(str(folder / contract.STEP_TS))
        complete_ts = torch.jit.load(str(folder / contract.COMPLETE_TS))
    out_names = [s.name for s in contract.step_outputs(config)]
    in_names = [s.name for s in contract.step_inputs(config)]
    step_tol, done_tol = contract.STEP_TOLERANCE, contract.COMPLETE_TOLERANCE
    report: dict[str, dict] = {}

    with torch.no_grad():
        worst_onnx, worst_ts = {}, {}
        for case, inputs in step_cases(model):
            want = [t.numpy() for t in eager_step(model, *inputs)]
            feed = {n: t.numpy() for n, t in zip(in_names, inputs, strict=True)}
            got = step_onnx.run(out_names, feed)
            _max_diffs(contract.STEP_ONNX, case, out_names, got, want, step_tol, worst_onnx)
            got_ts = [t.numpy() for t in step_ts(*inputs)]
            _max_diffs(contract.STEP_TS, case, out_names, got_ts, want, step_tol, worst_ts)
        report[contract.STEP_ONNX] = {"vs": "eager", "max_abs_diff": worst_onnx, "tol": step_tol}
        report[contract.STEP_TS] = {"vs": "eager", "max_abs_diff": worst_ts, "tol": step_tol}

        images = random_images() if images is None else images
        worst: dict[str, dict[str, float]] = {"onnx": {}, "ts": {}, "steps": {}}

        def run_step(row: np.ndarray, *state: np.ndarray) -> list[np.ndarray]:
            return step_onnx.run(out_names, dict(zip(in_names, (row, *state), strict=True)))

        for case, batch, known in complete_cases(images):
            want = complete(model, batch, known).numpy()
            feed = {"image": batch.numpy(), "known_rows": known.numpy()}
            got = complete_onnx.run(None, feed)[0]
            _max_diffs(
                contract.COMPLETE_ONNX, case, ["completed"], [got], [want], done_tol, worst["onnx"]
            )
            got_ts = complete_ts(batch, known).numpy()
            _max_diffs(
                contract.COMPLETE_TS, case, ["completed"], [got_ts], [want], done_tol, worst["ts"]
            )
            by_steps = complete_by_steps(run_step, config, batch.numpy(), known.numpy())
            _max_diffs(
                "complete.onnx vs step.onnx driven row by row",
                case,
                ["completed"],
                [got],
                [by_steps],
                done_tol,
                worst["steps"],
            )
            known_part = (
                np.arange(contract.IMAGE_SIZE)[None, :] < np.clip(known.numpy(), 1, 27)[:, None]
            )
            if not np.array_equal(got[known_part], batch.numpy()[known_part]):
                raise ParityError(
                    contract.COMPLETE_ONNX,
                    "completed",
                    case + " (known rows)",
                    float(np.abs(got - batch.numpy())[known_part].max()),
                    0.0,
                )
        report[contract.COMPLETE_ONNX] = {
            "vs": "eager",
            "max_abs_diff": worst["onnx"],
            "tol": done_tol,
        }
        report[contract.COMPLETE_TS] = {"vs": "eager", "max_abs_diff": worst["ts"], "tol": done_tol}
        report["complete_vs_steps"] = {"max_abs_diff": worst["steps"], "tol": done_tol}

        case, batch, known = next(c for c in complete_cases(images) if c[0].startswith(MIXED_3))
        reference = onnx.reference.ReferenceEvaluator(str(folder / contract.COMPLETE_ONNX))
        ref = reference.run(None, {"image": batch.numpy(), "known_rows": known.numpy()})[0]
        got = complete_onnx.run(None, {"image": batch.numpy(), "known_rows": known.numpy()})[0]
        ref_worst: dict[str, float] = {}
        _max_diffs(
            "complete.onnx in ReferenceEvaluator",
            case,
            ["completed"],
            [ref],
            [got],
            done_tol,
            ref_worst,
        )
        report["reference_evaluator"] = {"case": case, "max_abs_diff": ref_worst, "tol": done_tol}
    return report
