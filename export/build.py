"""Build one bundle folder from a trained model: programs, files, parity, manifest.

Everything is written into a temporary sibling folder and renamed into place at the end
(rowgen.publish.atomic_folder), so a failed or interrupted export keeps the previous bundle.
"""

from __future__ import annotations

import platform
import shutil
import time
from importlib import metadata
from pathlib import Path

import torch

from export.programs import Complete, Sample, SampleStep, Step
from export.validate import validate
from export.validate_sample import validate_sample
from export.writers import write_onnx, write_torchscript
from rowgen import contract
from rowgen.bundle import write_manifest
from rowgen.publish import atomic_folder
from training.model import RowGenerator


def _versions() -> dict[str, str]:
    names = ("torch", "onnx", "onnxruntime-gpu", "onnxscript", "numpy", "safetensors")
    found = {"python": platform.python_version()}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def write_programs(model: RowGenerator, folder: Path) -> None:
    """step/complete as ONNX and TorchScript, each ONNX file checked against the contract."""
    config = model.config
    step, done = Step(model).eval(), Complete(model).eval()
    b = 2  # example batch; the batch axis is exported as dynamic and checked to stay so
    state = [
        torch.zeros([b if d == contract.BATCH else d for d in s.shape])
        for s in contract.step_inputs(config)[1:]
    ]
    step_example = (torch.rand(b, contract.IMAGE_SIZE), *state)
    done_example = (torch.rand(b, contract.IMAGE_SIZE, contract.IMAGE_SIZE), torch.tensor([7, 14]))
    write_onnx(
        step,
        step_example,
        contract.step_inputs(config),
        contract.step_outputs(config),
        config,
        folder / contract.STEP_ONNX,
    )
    write_onnx(
        done,
        done_example,
        contract.complete_inputs(),
        contract.complete_outputs(),
        config,
        folder / contract.COMPLETE_ONNX,
    )
    write_torchscript(step, step_example, folder / contract.STEP_TS)
    write_torchscript(done, done_example, folder / contract.COMPLETE_TS)
    if config.stochastic:
        write_sample(model, folder, done_example, step_example)


def write_sample(
    model: RowGenerator, folder: Path, done_example: tuple, step_example: tuple
) -> None:
    """sample.onnx, sample.ts and sample_step.onnx of a sampling model; the example noise is
    any standard draw."""
    config = model.config
    b = len(done_example[0])
    temperature = torch.tensor([0.0, 1.0])[:b]
    noise = torch.randn(b, contract.SAMPLE_STEPS, config.noise_dim)
    example = (*done_example, noise, temperature)
    program = Sample(model).eval()
    inputs, outputs = contract.sample_inputs(config.noise_dim), contract.sample_outputs()
    write_onnx(program, example, inputs, outputs, config, folder / contract.SAMPLE_ONNX)
    write_torchscript(program, example, folder / contract.SAMPLE_TS)
    held = ()  # a head that holds a class: its kind state and the row_known flag
    if config.holds_kind:
        held = (torch.full((b, config.flow_classes), 1 / config.flow_classes), torch.ones(b))
    write_onnx(
        SampleStep(model).eval(),
        (*step_example, *held, noise[:, 0], temperature),
        contract.sample_step_inputs(config),
        contract.sample_step_outputs(config),
        config,
        folder / contract.SAMPLE_STEP_ONNX,
    )


def build_bundle(
    model: RowGenerator,
    out: Path,
    weights: Path,
    extra_files: list[Path] = (),  # type: ignore[assignment]
    info: dict | None = None,
    images: torch.Tensor | None = None,
) -> dict:
    """Write the bundle for `model` to `out` (atomically); return its manifest.

    weights: the model's weights.safetensors; extra_files: copied in beside it (training.json,
    PNGs); info: manifest fields from training (name, dataset, metrics, ...).
    """
    info = dict(info or {})
    start = time.perf_counter()
    with atomic_folder(out) as tmp:
        shutil.copy2(weights, tmp / contract.WEIGHTS)
        for extra in extra_files:
            shutil.copy2(extra, tmp / extra.name)
        write_programs(model, tmp)
        parity = validate(tmp, model, images)
        if model.config.stochastic:
            parity |= validate_sample(tmp, model, images)
        manifest = write_manifest(
            tmp,
            {
                "name": out.name,
                "config": model.config.to_dict(),
                "dataset": info.pop("dataset", None),
                "metrics": info.pop("metrics", {}),
                "contract": contract.as_data(model.config),
                "parity": parity,
                "exporter": f"torch.onnx legacy exporter, opset {contract.OPSET}; torch.jit.trace",
                "versions": _versions(),
                "training": info,
                "export_seconds": round(time.perf_counter() - start, 2),
            },
        )
    return manifest
