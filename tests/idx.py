"""Writing tiny IDX `.gz` files, the format of the MNIST family, for data tests."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray) -> None:
    """uint8 array -> IDX file (magic 0x00000800 | ndim), gzipped."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def write_tiny_dataset(folder: Path, n_train: int = 64, n_test: int = 32, seed: int = 0) -> Path:
    """The four standard files with smooth random 28x28 images (learnable row to row)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        base = rng.uniform(0, 255, size=(n, 1, 28))
        drift = np.linspace(0.3, 1.0, 28)[None, :, None]
        images = np.clip(base * drift + rng.normal(0, 8, size=(n, 28, 28)), 0, 255)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images.astype(np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, np.uint8))
    return folder
