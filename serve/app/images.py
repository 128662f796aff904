"""Safe image decoding and preprocessing for the server: any upload or sketch -> (28, 28) float32.

Torch-free. Uploads and sketches pass the same checks (serve.app.image_files): a file too big, a
header announcing too many pixels (a decompression bomb) or a format outside FORMATS is refused
before decoding, a file that ends early after; anything Pillow cannot read is a clear
`ImageInputError`, never a stack trace. Large images are shrunk while decoding (JPEG `draft`) or
right after (`reduce`), before any conversion that would copy them at full size. Pixel values
keep their meaning: 16-bit images are scaled by 65535 and float images must already lie in
[0, 1], so a dark scan stays dark. Used by `serve.app.layout` (`python -m serve`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from rowgen import contract
from serve.app.image_files import (
    MAX_BYTES,
    MAX_PIXELS,
    ImageInputError,
    check_complete,
    check_file,
)

WORK_SIZE = 4 * contract.IMAGE_SIZE  # shrink by whole factors while the long side stays >= this
EMPTY_LEVEL = 0.02  # a sketch whose brightest pixel stays under this has nothing drawn
SIXTEEN_BIT = 65535.0  # full scale of 16-bit ('I;16') and 32-bit integer ('I') pixels
STRIP_ROWS = 256  # value checks read this many rows at a time: no full-size float copy
WIDER = {"1": "L", "P": "LA", "PA": "LA"}  # modes `reduce` cannot average, and what they become


def open_image(path: Path | str | bytes, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS):
    """Check a file (`check_file`), then decode its first frame and shrink it.

    Returns a PIL image: first frame of an animation or multi-page TIFF, EXIF rotation applied,
    pixel values checked, long side shrunk to between WORK_SIZE and 2 * WORK_SIZE when larger.
    """
    name, image = check_file(path, max_bytes, max_pixels)
    try:
        try:  # Pillow's plugins raise many kinds of errors on malformed data: all mean "corrupt"
            image.seek(0)
            if image.format == "JPEG":  # decode at 1/2, 1/4 or 1/8 scale: never the full size
                image.draft(None, _shrunk_size(image.size))
            image.load()
            ImageOps.exif_transpose(image, in_place=True)  # in place: no full-size copy
            check_complete(path, image.format)
        except Exception as exc:
            raise ImageInputError(f"{name} is corrupt or truncated ({exc})") from exc
        small = shrink(image)
        return image.copy() if small is image else small  # a copy outlives the close below
    finally:
        image.close()


def _factor(size: tuple[int, int]) -> int:
    return max(1, max(size) // WORK_SIZE)


def _shrunk_size(size: tuple[int, int]) -> tuple[int, int]:
    factor = _factor(size)
    return max(1, size[0] // factor), max(1, size[1] // factor)


def check_values(image: Image.Image) -> None:
    """Integer ('I') pixels must lie in 0..65535 and float ('F') ones in [0, 1], all finite."""
    if image.mode not in ("I", "F"):
        return  # 8- and 16-bit unsigned modes cannot hold a value out of their range
    top = SIXTEEN_BIT if image.mode == "I" else 1.0
    what = "32-bit integer" if image.mode == "I" else "float"
    fix = "save it as an 8- or 16-bit image" + (" or scale it to [0, 1]" if what == "float" else "")
    for y in range(0, image.height, STRIP_ROWS):
        strip = np.asarray(image.crop((0, y, image.width, min(y + STRIP_ROWS, image.height))))
        if np.isnan(strip).any():
            raise ImageInputError(f"the image has NaN (not a number) pixel values; {fix}")
        if np.isinf(strip).any():
            raise ImageInputError(f"the image has infinite pixel values; {fix}")
        low, high = strip.min(), strip.max()
        if low < 0:
            raise ImageInputError(f"the image has negative pixel values (down to {low}); {fix}")
        if high > top:
            raise ImageInputError(
                f"{what} pixel values must lie in [0, {top:g}], this image has {high:g}; {fix}"
            )


def shrink(image: Image.Image) -> Image.Image:
    """Check pixel values, then reduce by a whole factor so the long side is < 2 * WORK_SIZE.

    Modes `reduce` cannot average (bilevel, palette, 16-bit) are first widened losslessly
    (to L, LA and 32-bit I): the only conversion made at full size.
    """
    try:
        if image.mode.startswith("I;16"):
            image = image.convert("I")
        elif image.mode in WIDER:
            image = image.convert(WIDER[image.mode])
    except ValueError as exc:
        message = f"images of pixel mode {image.mode} are not supported ({exc})"
        raise ImageInputError(message) from exc
    check_values(image)
    factor = _factor(image.size)
    return image.reduce(factor) if factor > 1 else image


def to_gray(image: Image.Image, invert: bool) -> Image.Image:
    """Grayscale, white object on black; transparent areas become background (black).

    invert=True is for dark-on-light drawings: transparency is laid on white, then inverted.
    """
    if image.mode in ("I", "F"):  # checked by `shrink`: I in 0..65535, F in [0, 1]
        array = np.asarray(image, dtype=np.float32) / (SIXTEEN_BIT if image.mode == "I" else 1.0)
        image = Image.fromarray(np.round(array * 255.0).astype(np.uint8), "L")
    try:
        rgba = image.convert("RGBA")
    except ValueError:  # e.g. LAB or HSV: no direct route to RGBA in Pillow
        rgba = image.convert("RGB").convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255) if invert else (0, 0, 0, 255))
    gray = Image.alpha_composite(background, rgba).convert("L")
    return ImageOps.invert(gray) if invert else gray


def fit(gray: Image.Image, size: int = contract.IMAGE_SIZE) -> np.ndarray:
    """Scale into size x size with the aspect kept, centred on black -> (size, size) in [0, 1]."""
    # Aspect kept, but never below one pixel: ImageOps.contain rounds a 129x1 strip to 28x0.
    ratio = min(size / gray.width, size / gray.height)
    target = (max(1, round(gray.width * ratio)), max(1, round(gray.height * ratio)))
    scaled = gray.resize(target, Image.Resampling.LANCZOS)
    canvas = Image.new("L", (size, size), 0)
    canvas.paste(scaled, ((size - scaled.width) // 2, (size - scaled.height) // 2))
    return np.asarray(canvas, dtype=np.float32) / 255.0  # (28, 28)


def load_upload(path: Path | str | bytes | None, invert: bool = False) -> np.ndarray:
    """An uploaded file (a path, or its bytes) of any size or mode -> (28, 28) float32 in [0, 1]."""
    if path is None:
        raise ImageInputError("no image was uploaded: choose a file first")
    return fit(to_gray(open_image(path), invert))


def from_array(array: np.ndarray, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """An (H, W) or (H, W, 1-4) array -> a PIL image, under the same limits as a file.

    uint8 is 0..255, uint16 0..65535, bool 0/1 and float must lie in [0, 1].
    """
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or array.size == 0 or (array.ndim == 3 and array.shape[2] > 4):
        raise ImageInputError(f"the sketch has an unexpected shape {array.shape}")
    height, width = array.shape[:2]
    if width * height > max_pixels:
        raise ImageInputError(
            f"the sketch is {width}x{height} pixels; the limit is {max_pixels:,} pixels"
        )
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if array.dtype == np.uint8:
        channels = array.shape[2] if array.ndim == 3 else 1
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
        return Image.fromarray(np.ascontiguousarray(array), mode)
    if array.ndim == 2 and array.dtype == np.uint16:
        return Image.fromarray(array.astype(np.int32), "I")  # same range: 0..65535
    if array.ndim == 2 and array.dtype.kind == "f":
        with np.errstate(over="ignore"):  # beyond float32's range: inf, refused as such later
            return Image.fromarray(array.astype(np.float32), "F")
    raise ImageInputError(
        f"the sketch has {array.dtype} pixels in shape {array.shape}: expected uint8 (gray, "
        "gray+alpha, RGB or RGBA), or one channel of uint16 or float in [0, 1]"
    )


def load_sketch(value: dict | np.ndarray | str | None) -> np.ndarray:
    """A Sketchpad value (its `composite`, dark strokes on light) -> (28, 28) float32 in [0, 1].

    The composite may be an array or a file path; both pass the checks an upload does.
    """
    composite = value.get("composite") if isinstance(value, dict) else value
    if composite is None:
        raise ImageInputError("the sketch is empty: draw something first")
    if isinstance(composite, (str, Path)):
        image = open_image(composite)
    else:
        try:
            array = np.asarray(composite)
        except (TypeError, ValueError) as exc:
            raise ImageInputError(f"the sketch is not an image ({exc})") from exc
        image = shrink(from_array(array))
    grid = fit(to_gray(image, invert=True))
    if grid.max() < EMPTY_LEVEL:
        raise ImageInputError("the sketch is empty: draw something first")
    return grid
