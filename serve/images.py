"""Safe image decoding and preprocessing for the server: any upload or sketch -> (28, 28) float32.

Torch-free. An upload is refused before it is decoded when its file is too big or its header
announces too many pixels (a decompression bomb); anything Pillow cannot read is a clear
`ImageInputError`, never a stack trace. Used by `serve.app` (`python -m serve`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from rowgen import contract

MAX_BYTES = 10 * 1024 * 1024  # an upload larger than this is refused unread
MAX_PIXELS = 4096 * 4096  # width * height from the header; larger is refused before decoding
EMPTY_LEVEL = 0.02  # a sketch whose brightest pixel stays under this has nothing drawn


class ImageInputError(ValueError):
    """The input cannot become a 28x28 image; the message says why, for the user."""


def open_image(path: Path | str, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS):
    """Open and fully decode an image file, checking its byte size and header size first.

    Returns a PIL image (first frame of an animation, EXIF rotation applied).
    """
    path = Path(path)
    if not path.is_file():
        raise ImageInputError("no image was given: choose a sample, upload a file or draw")
    size = path.stat().st_size
    if size > max_bytes:
        raise ImageInputError(f"the file is {size / 2**20:.1f} MiB; the limit is {_mib(max_bytes)}")
    if size == 0:
        raise ImageInputError("the file is empty")
    try:
        with warnings.catch_warnings():  # Pillow's bomb *warning*: our own limit below decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)  # lazy: reads the header only
    except Image.DecompressionBombError as exc:
        raise ImageInputError(f"the image is far too large ({exc})") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageInputError(
            f"{path.name} is not an image Pillow can read (PNG, JPEG, WebP, GIF, BMP, ...)"
        ) from exc
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageInputError(
            f"the image is {width}x{height} pixels; the limit is {max_pixels:,} pixels"
        )
    if width < 1 or height < 1:
        raise ImageInputError(f"the image has no pixels ({width}x{height})")
    try:
        image.seek(0)
        image.load()  # the real decode: a truncated or corrupt file fails here
        upright = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        image.close()
        raise ImageInputError(f"{path.name} is corrupt or truncated ({exc})") from exc
    if upright is not image:  # a copy: release the file an animation keeps open
        image.close()
    return upright


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def to_gray(image: Image.Image, invert: bool) -> Image.Image:
    """Grayscale, white object on black; transparent areas become background.

    invert=True is for dark-on-light drawings: transparency is laid on white, then inverted.
    """
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit/float PNGs: scale to 8 bits
        array = np.asarray(image, dtype=np.float64)
        top = array.max() or 1.0
        image = Image.fromarray((array / top * 255.0).astype(np.uint8), "L")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255) if invert else (0, 0, 0, 255))
    gray = Image.alpha_composite(background, rgba).convert("L")
    return ImageOps.invert(gray) if invert else gray


def fit(gray: Image.Image, size: int = contract.IMAGE_SIZE) -> np.ndarray:
    """Scale into size x size with the aspect kept, centred on black -> (size, size) in [0, 1]."""
    scaled = ImageOps.contain(gray, (size, size), method=Image.Resampling.LANCZOS)
    canvas = Image.new("L", (size, size), 0)
    canvas.paste(scaled, ((size - scaled.width) // 2, (size - scaled.height) // 2))
    return np.asarray(canvas, dtype=np.float32) / 255.0  # (28, 28)


def load_upload(path: Path | str | None, invert: bool = False) -> np.ndarray:
    """An uploaded file of any size or mode -> (28, 28) float32 in [0, 1]."""
    if path is None:
        raise ImageInputError("no image was uploaded: choose a file first")
    with open_image(path) as image:
        return fit(to_gray(image, invert))


def load_sketch(value: dict | np.ndarray | None) -> np.ndarray:
    """A Sketchpad value (its `composite`, black strokes on white) -> (28, 28) float32 in [0, 1]."""
    composite = value.get("composite") if isinstance(value, dict) else value
    if composite is None:
        raise ImageInputError("the sketch is empty: draw something first")
    array = np.asarray(composite)
    if array.ndim not in (2, 3) or array.size == 0:
        raise ImageInputError(f"the sketch has an unexpected shape {array.shape}")
    array = np.clip(array, 0, 255).astype(np.uint8)
    grid = fit(to_gray(Image.fromarray(array.squeeze()), invert=True))
    if grid.max() < EMPTY_LEVEL:
        raise ImageInputError("the sketch is empty: draw something first")
    return grid
