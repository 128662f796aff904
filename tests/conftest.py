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
    root = tmp_path_factory.mktemp("artifacts")
    for name, (cell, mode, hidden, layers) in TINY_CONFIGS.items():
        export_tiny(tiny_model(cell, mode, hidden, layers), root / name)
    return root


def export_tiny(model, folder: Path) -> None:
    """Export `model` as a bundle at `folder` (its weights file only passes through)."""
    from export.build import build_bundle
    from training.checkpoint import save_weights

    weights = folder.with_suffix(".safetensors")
    save_weights(model, weights)
    info = {"dataset": "fashion-mnist", "metrics": {"test_mse_k14": 0.1}}
    build_bundle(model, folder, weights, info=info)
    weights.unlink()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real Fashion-MNIST files, from $ROWGEN_DATA_DIR or ../shared (skip when absent)."""
    path = Path(os.environ.get("ROWGEN_DATA_DIR", SHARED_DATA))
    if not (path / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"no Fashion-MNIST files at {path} (set ROWGEN_DATA_DIR)")
    return path


TINY_SAMPLER = "lstm-cvae"  # the stochastic bundle of `tiny_sampler_bundles`


def tiny_sampler(hidden: int = 8, noise_dim: int = 4, seed: int = 0):
    """A random-weight cvae RowGenerator: a mean head plus a latent head that samples."""
    import torch

    from rowgen.config import ModelConfig
    from training.model import RowGenerator

    torch.manual_seed(seed)
    return RowGenerator(ModelConfig("lstm", "stream", hidden, 1, "cvae", noise_dim)).eval()


@pytest.fixture(scope="session")
def tiny_sampler_bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding one exported, parity-checked stochastic bundle and one plain one."""
    root = tmp_path_factory.mktemp("sampler-artifacts")
    for name, model in ((TINY_SAMPLER, tiny_sampler()), ("gru", tiny_model("gru"))):
        export_tiny(model, root / name)
    return root
