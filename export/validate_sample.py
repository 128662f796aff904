"""Parity of `sample.onnx` / `sample.ts`, run on every export of a stochastic (cvae) model.

The same image, known_rows, noise and temperature must give the same completion in eager
PyTorch (training.latent.sample), TorchScript, onnxruntime and the ONNX reference evaluator,
within the contract's `completed` tolerance (1e-4), for batches 1, 3, 64, prompts of 1..27 rows,
temperatures 0, 1 and mixed (negative included); known rows must be copied bit for bit.
The design has no discrete choice (training.latent), so nothing can flip between runtimes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx.reference
import onnxruntime as ort
import torch

from export.errors import ParityError
from export.validate import BATCHES, _max_diffs, random_images
from export.writers import quiet_exporters
from rowgen import contract
from training.latent import sample
from training.model import RowGenerator

REFERENCE_CASE = "batch 3, mixed known_rows and temperature"


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


def validate_sample(folder: Path, model: RowGenerator, images: torch.Tensor | None = None) -> dict:
    """Check sample.onnx and sample.ts in `folder` against `model`; return the worst diffs."""
    model = model.eval()
    noise_dim = model.config.noise_dim
    session = ort.InferenceSession(
        str(folder / contract.SAMPLE_ONNX), providers=["CPUExecutionProvider"]
    )
    with quiet_exporters():
        scripted = torch.jit.load(str(folder / contract.SAMPLE_TS))
    images = random_images() if images is None else images
    tol = contract.COMPLETE_TOLERANCE
    worst: dict[str, dict[str, float]] = {"onnx": {}, "ts": {}, "ref": {}}
    cases = sample_cases(images, noise_dim)
    with torch.no_grad():
        for case, inputs in cases:
            want = sample(model, *inputs).numpy()
            got = session.run(None, _feed(inputs, noise_dim))[0]
            _max_diffs(contract.SAMPLE_ONNX, case, ["completed"], [got], [want], tol, worst["onnx"])
            got_ts = scripted(*inputs).numpy()
            _max_diffs(contract.SAMPLE_TS, case, ["completed"], [got_ts], [want], tol, worst["ts"])
            image, known = inputs[0].numpy(), inputs[1].numpy()
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
    return {
        contract.SAMPLE_ONNX: {"vs": "eager", "max_abs_diff": worst["onnx"], "tol": tol},
        contract.SAMPLE_TS: {"vs": "eager", "max_abs_diff": worst["ts"], "tol": tol},
        "sample_reference_evaluator": {"case": case, "max_abs_diff": worst["ref"], "tol": tol},
    }
