"""The whole main job on real data, small: train, export, open the bundle (`make test-all`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from export.__main__ import main as export_main
from rowgen import contract
from rowgen.bundle import open_bundle
from training.train import main as train_main


@pytest.mark.slow
@pytest.mark.parametrize("cell, mode", [("lstm", "stream"), ("gru", "window")])
def test_train_then_export_on_real_data(data_dir: Path, tmp_path: Path, cell: str, mode: str):
    artifacts = tmp_path / "artifacts"
    argv = [
        "--cell",
        cell,
        "--mode",
        mode,
        "--hidden",
        "32",
        "--epochs",
        "2",
        "--free-run-from",
        "1",
        "--limit-train",
        "2000",
        "--limit-test",
        "500",
        "--data-dir",
        str(data_dir),
        "--runs",
        str(tmp_path / "runs"),
    ]
    assert train_main(argv) == 0
    assert not artifacts.exists()  # training publishes nothing; export does, once validated
    assert export_main(["--runs", str(tmp_path / "runs"), "--artifacts", str(artifacts)]) == 0
    bundle = open_bundle(artifacts / (cell if mode == "stream" else f"{cell}-{mode}"))
    assert bundle.config.cell == cell and bundle.config.mode == mode
    metrics = bundle.manifest["metrics"]
    assert all(0.0 < metrics[f"test_mse_k{k}"] < 0.2 for k in contract.EVAL_KNOWN_ROWS)
