"""Shared fixtures: tiny random-weight models and bundles, so fast tests need no trained bundle."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# gradio must never phone home, in any test.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "artifacts"
SHARED_DATA = REPO.parent / "shared" / "data" / "fashion-mnist"

TINY_CONFIGS = {  # name -> (cell, mode, hidden, layers)
    "lstm": ("lstm", "stream", 8, 1),
    "gru": ("gru", "stream", 8, 1),
    "rnn": ("rnn", "stream", 8, 2),
    "lstm-window": ("lstm", "window", 6, 1),
}


def tiny_model(cell: str, mode: str = "stream", hidden: int = 8, layers: int = 1, seed: int = 0):
    """A random-weight RowGenerator (torch imported lazily: serve tests must not need it)."""
    import torch

    from rowgen.config import ModelConfig
    from training.model import RowGenerator

    torch.manual_seed(seed)
    return RowGenerator(ModelConfig(cell, mode, hidden, layers)).eval()


@pytest.fixture(scope="session")
def tiny_bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of exported, parity-checked bundles of tiny random models, one per cell/mode."""
    from export.build import build_bundle
    from training.checkpoint import save_weights

    root = tmp_path_factory.mktemp("artifacts")
    for name, (cell, mode, hidden, layers) in TINY_CONFIGS.items():
        model = tiny_model(cell, mode, hidden, layers)
        weights = root / f"{name}.safetensors"
        save_weights(model, weights)
        info = {"dataset": "fashion-mnist", "metrics": {"test_mse_k14": 0.1}}
        build_bundle(model, root / name, weights, info=info)
        weights.unlink()
    return root


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real Fashion-MNIST files, from $ROWGEN_DATA_DIR or ../shared (skip when absent)."""
    path = Path(os.environ.get("ROWGEN_DATA_DIR", SHARED_DATA))
    if not (path / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"no Fashion-MNIST files at {path} (set ROWGEN_DATA_DIR)")
    return path
