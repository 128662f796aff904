"""Write Triton model repositories of verified bundles, each replaced whole or not at all.

Two repositories of the same models (export.triton.configs), written by `python -m export.triton`:

    artifacts/triton/              the onnxruntime backend, for real deployments
      <model>/config.pbtxt         KIND_GPU
      <model>/configs/cpu.pbtxt    KIND_CPU (tritonserver --model-config-name=cpu)
      <model>/1/model.onnx         the bundle's program, its verified bytes
    artifacts/triton-python/       the python backend, which `make triton-serve` runs here
      <model>/config.pbtxt         KIND_CPU
      <model>/1/model.py           export/triton/model.py
      <model>/1/<bundle>/          the bundle's files, opened by rowgen's verified loader

Two repositories rather than a third `--model-config-name`: the onnxruntime one stays exactly
what a deployment needs (no Python code, no second copy of the bundle), and each folder loads
whole with a plain `tritonserver --model-repository=...`. Every model is checked
(export.triton.check) right after it is written. A repository replaces only an empty folder or
one this module wrote (its marker file), and only once every model of it has been written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from export.triton.check import PYTHON_MODEL_FILE, check_model_dir, check_python_model_dir
from export.triton.configs import (
    ONNXRUNTIME,
    PYTHON,
    Batching,
    TritonExportError,
    cpu_variant,
    models_for,
    python_variant,
    render,
)
from rowgen import contract
from rowgen.bundle import Bundle
from rowgen.publish import atomic_folder

VERSION = "1"  # Triton serves the highest numeric version folder; a repository holds one
MODEL_FILE = "model.onnx"  # the onnxruntime backend's default_model_filename
CONFIG = "config.pbtxt"
CPU_CONFIG = Path("configs") / "cpu.pbtxt"  # Triton's custom config: --model-config-name=cpu
MARKER = ".rowgen-triton.json"  # says a folder is ours to replace; Triton loads folders only
MODEL_SOURCE = Path(__file__).with_name("model.py")  # the python backend's model (runs in Triton)


def _source(bundle: Bundle, program: str, data: bytes) -> dict:
    return {"bundle": bundle.name, "file": program, "sha256": hashlib.sha256(data).hexdigest()}


def _write_onnxruntime_model(root: Path, bundle: Bundle, config: mc.ModelConfig, program: str):
    folder = root / config.name
    (folder / VERSION).mkdir(parents=True)
    data = bundle.read(program)  # the bytes open_bundle hashed: what is copied was checked
    (folder / VERSION / MODEL_FILE).write_bytes(data)
    (folder / CONFIG).write_text(render(config))
    (folder / CPU_CONFIG).parent.mkdir()
    (folder / CPU_CONFIG).write_text(render(cpu_variant(config)))
    check_model_dir(folder)
    return _source(bundle, program, data)


def _write_python_model(root: Path, bundle: Bundle, config: mc.ModelConfig, program: str):
    folder = root / config.name
    copy = folder / VERSION / bundle.name
    copy.mkdir(parents=True)
    for name in bundle.manifest["files"]:
        (copy / name).write_bytes(bundle.read(name))  # verified bytes, as for model.onnx
    (copy / contract.MANIFEST).write_text(json.dumps(bundle.manifest, indent=2) + "\n")
    (folder / VERSION / PYTHON_MODEL_FILE).write_bytes(MODEL_SOURCE.read_bytes())
    (folder / CONFIG).write_text(render(python_variant(config)))
    check_python_model_dir(folder)
    return _source(bundle, program, bundle.read(program))


WRITERS = {ONNXRUNTIME: _write_onnxruntime_model, PYTHON: _write_python_model}


def _check_out(out: Path) -> None:
    """Replace `out` only when it is missing, empty, or a repository this module wrote."""
    if out.exists() and not out.is_dir():
        raise TritonExportError(f"{out} is a file; pass a folder for the repository")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise TritonExportError(
            f"{out} is not empty and was not written by `make triton` (no {MARKER}); "
            "pass another folder or remove it"
        )


def write_repositories(
    bundles: list[Bundle], outs: dict[str, Path], batching: Batching
) -> dict[str, dict[str, dict]]:
    """Write the repository of each backend in `outs` ({backend: folder}) for `bundles`; return
    {backend: {model name: its source}}.

    Every repository is written in full before any replaces its folder: a failure on the way
    keeps every previous repository as it was (rowgen.publish.atomic_folder).
    """
    if not bundles:
        raise TritonExportError("no bundles given")
    for out in outs.values():
        _check_out(out)
    written: dict[str, dict[str, dict]] = {}
    with contextlib.ExitStack() as stack:
        for backend, out in outs.items():
            tmp = stack.enter_context(atomic_folder(out))
            written[backend] = _write(tmp, bundles, batching, backend)
    return written


def _write(root: Path, bundles: list[Bundle], batching: Batching, backend: str) -> dict[str, dict]:
    models: dict[str, dict] = {}
    for bundle in bundles:
        for config, program in models_for(bundle, batching):
            if config.name in models:  # e.g. a bundle named `lstm_step` beside `lstm`
                raise TritonExportError(
                    f"two models named {config.name!r} (bundles {models[config.name]['bundle']}"
                    f" and {bundle.name}); rename one of the bundles"
                )
            models[config.name] = WRITERS[backend](root, bundle, config, program)
    marker = {"backend": backend, "batching": asdict(batching), "models": models}
    (root / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return models
