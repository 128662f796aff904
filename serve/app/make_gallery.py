"""Write the app's gallery: a few Fashion-MNIST test images, the first `--per-class` of each class.

Torch-free; run once, and the result (`serve/app/data/fashion-mnist-test.npz`, a few KiB) is
committed so the server needs no dataset:

    python -m serve.app.make_gallery --data-dir DIR   # or $ROWGEN_DATA_DIR
"""

from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import numpy as np

from serve.app.gallery import CLASS_NAMES, GALLERY_FILE

IMAGES = "t10k-images-idx3-ubyte.gz"
LABELS = "t10k-labels-idx1-ubyte.gz"


def read_idx(path: Path, header: int) -> np.ndarray:
    """The bytes after an idx file's header (16 bytes for images, 8 for labels)."""
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), np.uint8, offset=header)


def pick(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first `per_class` images of every class, ordered by class."""
    return np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])


def make_gallery(data_dir: Path, out: Path, per_class: int = 2) -> Path:
    images = read_idx(data_dir / IMAGES, 16).reshape(-1, 28, 28)  # (10000, 28, 28) uint8
    labels = read_idx(data_dir / LABELS, 8).astype(np.int64)  # (10000,)
    if len(images) != len(labels):
        raise ValueError(f"{data_dir}: {len(images)} images but {len(labels)} labels")
    chosen = pick(labels, per_class)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        images=images[chosen],
        labels=labels[chosen],
        indices=chosen.astype(np.int64),  # position in the 10,000-image test split
        class_names=np.array(CLASS_NAMES),
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serve.app.make_gallery", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="folder with t10k-*.gz")
    parser.add_argument("--out", type=Path, default=GALLERY_FILE, help="the .npz to write")
    parser.add_argument("--per-class", type=int, default=2, help="images taken from each class")
    args = parser.parse_args(argv)
    path = make_gallery(args.data_dir, args.out, args.per_class)
    print(f"wrote {path} ({path.stat().st_size} bytes, {10 * args.per_class} images)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
