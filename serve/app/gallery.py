"""The app's gallery: Fashion-MNIST test images shipped in `serve/app/data/`.

Torch-free. `python -m serve.app.make_gallery` writes the file; the app shows it as a gallery.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rowgen.datasets import CLASS_NAMES as DATASET_CLASSES
from rowgen.pictures import to_uint8

GALLERY_FILE = Path(__file__).resolve().parent / "data" / "fashion-mnist-test.npz"
CLASS_NAMES = DATASET_CLASSES["fashion-mnist"]
THUMB_SCALE = 4  # gallery thumbnails are enlarged with nearest-neighbour, so pixels stay crisp


@dataclass(frozen=True)
class GalleryImage:
    image: np.ndarray  # (28, 28) float32 in [0, 1]
    label: str
    index: int  # position in the test split

    def thumbnail(self) -> np.ndarray:
        """(112, 112) uint8 for the gallery."""
        return to_uint8(self.image).repeat(THUMB_SCALE, axis=0).repeat(THUMB_SCALE, axis=1)


def load_gallery(path: Path = GALLERY_FILE) -> list[GalleryImage]:
    """The shipped samples, in file order (by class)."""
    with np.load(path, allow_pickle=False) as data:
        images = data["images"].astype(np.float32) / 255.0  # (N, 28, 28)
        names = [str(n) for n in data["class_names"]]
        return [
            GalleryImage(image, names[int(label)], int(index))
            for image, label, index in zip(images, data["labels"], data["indices"], strict=True)
        ]
