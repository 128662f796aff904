"""Exported programs agree with eager PyTorch; broken exports are caught and named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export import build
from export.errors import ExportError, ParityError
from export.validate import validate
from export.writers import check_onnx
from rowgen import contract
from rowgen.bundle import open_bundle
from tests.conftest import ARTIFACTS, TINY_CONFIGS, tiny_model
from training.checkpoint import load_weights, save_weights
from training.latent import sample
from training.model import complete

SHIPPED = ("lstm",)  # the GRU bundle made room for lstm's sample programs (12 MB budget)


@pytest.mark.parametrize("name", list(TINY_CONFIGS))
def test_tiny_bundle_parity_is_recorded(tiny_bundles: Path, name: str) -> None:
    bundle = open_bundle(tiny_bundles / name)
    parity = bundle.manifest["parity"]
    for program in (contract.STEP_ONNX, contract.STEP_TS, contract.COMPLETE_ONNX):
        for tensor, diff in parity[program]["max_abs_diff"].items():
            assert diff <= parity[program]["tol"], f"{name} {program} {tensor}: {diff}"
    assert parity["reference_evaluator"]["max_abs_diff"]["completed"] <= 1e-4


@pytest.mark.parametrize("name", list(TINY_CONFIGS))
def test_onnx_files_keep_the_contract(tiny_bundles: Path, name: str) -> None:
    bundle = open_bundle(tiny_bundles / name)
    config = bundle.config
    check_onnx(
        bundle.file(contract.STEP_ONNX),
        contract.step_inputs(config),
        contract.step_outputs(config),
        config,
    )
    check_onnx(
        bundle.file(contract.COMPLETE_ONNX),
        contract.complete_inputs(),
        contract.complete_outputs(),
        config,
    )
    session = ort.InferenceSession(
        str(bundle.file(contract.COMPLETE_ONNX)), providers=["CPUExecutionProvider"]
    )
    assert session.get_modelmeta().custom_metadata_map["rowgen.cell"] == config.cell
    for batch in (1, 5, 130):  # the batch axis really is dynamic
        image = np.random.default_rng(batch).random((batch, 28, 28), dtype=np.float32)
        known = np.full(batch, 9, np.int64)
        out = session.run(None, {"image": image, "known_rows": known})[0]
        assert out.shape == (batch, 28, 28)


def test_torchscript_loads_without_rowgen(tiny_bundles: Path, tmp_path: Path) -> None:
    script = (
        "import sys, torch; sys.modules['rowgen'] = None; sys.modules['training'] = None\n"
        f"m = torch.jit.load({str(tiny_bundles / 'gru' / contract.COMPLETE_TS)!r})\n"
        "print(tuple(m(torch.rand(2, 28, 28), torch.tensor([3, 20])).shape))\n"
    )
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "(2, 28, 28)" in result.stdout


def _export_with_wrong_gru(real_write_onnx):
    """write_onnx, then flip GRU's linear_before_reset to 0: the classic GRU mis-export."""

    def write(program, example, inputs, outputs, config, path) -> None:
        real_write_onnx(program, example, inputs, outputs, config, path)
        model = onnx.load(str(path))
        for node in model.graph.node:
            if node.op_type == "GRU":
                for attr in node.attribute:
                    if attr.name == "linear_before_reset":
                        attr.i = 0
        onnx.save(model, str(path))

    return write


def test_gru_mis_export_is_caught_and_previous_bundle_kept(
    tiny_bundles: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "gru"
    shutil.copytree(tiny_bundles / "gru", folder)
    before = (folder / contract.MANIFEST).read_text()
    model = tiny_model("gru")
    weights = tmp_path / "w.safetensors"
    save_weights(model, weights)
    monkeypatch.setattr(build, "write_onnx", _export_with_wrong_gru(build.write_onnx))
    with pytest.raises(ParityError, match=r"step.onnx: next_row differs by .* in case batch 1"):
        build.build_bundle(model, folder, weights)
    assert (folder / contract.MANIFEST).read_text() == before
    open_bundle(folder)  # still whole and verified
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_frozen_batch_axis_is_caught(tiny_bundles: Path, tmp_path: Path) -> None:
    model = onnx.load(str(tiny_bundles / "lstm" / contract.STEP_ONNX))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2  # what some exporters do
    path = tmp_path / "frozen.onnx"
    onnx.save(model, str(path))
    config = open_bundle(tiny_bundles / "lstm").config
    with pytest.raises(ExportError, match="row axis 0 is frozen to 2"):
        check_onnx(path, contract.step_inputs(config), contract.step_outputs(config), config)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_bundle_matches_eager(name: str, tmp_path: Path) -> None:
    folder = ARTIFACTS / name
    if not (folder / contract.MANIFEST).is_file():
        pytest.fail(f"the reference bundle {folder} is missing: run `make train export`")
    bundle = open_bundle(folder)
    model = load_weights(bundle.file(contract.WEIGHTS))
    assert model.config == bundle.config
    report = validate(folder, model)
    assert report[contract.COMPLETE_ONNX]["max_abs_diff"]["completed"] <= 1e-4
    metrics = bundle.manifest["metrics"]
    assert set(metrics) >= {f"test_mse_k{k}" for k in contract.EVAL_KNOWN_ROWS}
    assert json.loads((folder / contract.MANIFEST).read_text())["format"] == contract.FORMAT


def test_eager_reference_matches_shipped_complete_onnx_on_a_mixed_batch() -> None:
    folder = ARTIFACTS / "lstm"
    if not (folder / contract.MANIFEST).is_file():
        pytest.fail(f"the reference bundle {folder} is missing: run `make train export`")
    model = load_weights(folder / contract.WEIGHTS)
    image = torch.rand(6, 28, 28, generator=torch.Generator().manual_seed(5))
    known = torch.tensor([1, 3, 7, 14, 21, 27])
    session = ort.InferenceSession(
        str(folder / contract.COMPLETE_ONNX), providers=["CPUExecutionProvider"]
    )
    got = session.run(None, {"image": image.numpy(), "known_rows": known.numpy()})[0]
    assert np.abs(got - complete(model, image, known).numpy()).max() <= 1e-4


def test_shipped_sample_onnx_matches_eager() -> None:
    folder = ARTIFACTS / "lstm"
    bundle = open_bundle(folder)
    assert bundle.config.stochastic, "the shipped lstm bundle samples (sample.onnx)"
    model = load_weights(bundle.file(contract.WEIGHTS))
    gen = torch.Generator().manual_seed(2)
    image = torch.rand(5, 28, 28, generator=gen)
    known = torch.tensor([1, 7, 14, 21, 27])
    noise = torch.randn(5, contract.SAMPLE_STEPS, bundle.config.noise_dim, generator=gen)
    temperature = torch.tensor([1.0, 0.0, 0.5, 1.0, 2.0])
    names = [s.name for s in contract.sample_inputs(bundle.config.noise_dim)]
    feeds = {n: t.numpy() for n, t in zip(names, (image, known, noise, temperature), strict=True)}
    session = ort.InferenceSession(
        str(folder / contract.SAMPLE_ONNX), providers=["CPUExecutionProvider"]
    )
    got = session.run(None, feeds)[0]
    want = sample(model, image, known, noise, temperature).numpy()
    assert np.abs(got - want).max() <= contract.COMPLETE_TOLERANCE
