"""An image file from a user (an upload, a drawing) checked before and after Pillow decodes it.

Torch-free. `check_file` reads only the size and the header: a file over MAX_BYTES, a header
announcing more than MAX_PIXELS (a decompression bomb, however large: the message gives its size
and the limit, where Pillow's own check would say only that it exceeds 178,956,970 pixels) or a
format outside FORMATS is refused before anything is decoded. `check_complete` refuses a file
that ends early where Pillow's decoder does not notice: a PNG whose last chunks are missing or cut,
a GIF without its trailer. Every refusal is an `ImageInputError` saying why, for the user. Used by
serve.app.images and serve.app.sketchpad.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image

MAX_BYTES = 10 * 1024 * 1024  # an upload larger than this is refused unread
MAX_PIXELS = 4096 * 4096  # width * height from the header; larger is refused before decoding
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")  # Pillow's names; nothing else is opened
ACCEPTED = "PNG, JPEG, GIF, BMP, WebP or TIFF"
GIF_TRAILER = b";"  # a GIF's last byte
PNG_IEND_CRC = b"\xaeB`\x82"  # the checksum of the empty IEND chunk, a PNG's last 4 bytes


class ImageInputError(ValueError):
    """The input cannot become a 28x28 image; the message says why, for the user."""


def check_file(
    path: Path | str | bytes, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS
) -> tuple[str, Image.Image]:
    """Check a file (a path, or its bytes) from its size and header alone, decoding nothing.

    Returns its name for messages and the lazily opened image (the caller closes it).
    """
    name, data = _source(path)
    size = len(data) if isinstance(data, bytes) else data.stat().st_size
    if size > max_bytes:
        raise ImageInputError(f"the file is {size / 2**20:.1f} MiB; the limit is {_mib(max_bytes)}")
    if size == 0:
        raise ImageInputError("the file is empty")
    try:
        image = _open_header(_stream(data), name)
    except Image.DecompressionBombError:  # past Pillow's own limit, which names no size
        size = _announced_size(_stream(data))
        if size is None:
            raise ImageInputError(f"the image is over the limit of {max_pixels:,} pixels") from None
        raise ImageInputError(_too_large(*size, max_pixels)) from None
    width, height = image.size
    if width * height > max_pixels or width < 1 or height < 1:
        image.close()
        if width < 1 or height < 1:
            raise ImageInputError(f"the image has no pixels ({width}x{height})")
        raise ImageInputError(_too_large(width, height, max_pixels))
    return name, image


def _too_large(width: int, height: int, max_pixels: int) -> str:
    return f"the image is {width}x{height} pixels; the limit is {max_pixels:,} pixels"


def _stream(data: Path | bytes) -> Path | io.BytesIO:
    return data if isinstance(data, Path) else io.BytesIO(data)


def _source(path: Path | str | bytes) -> tuple[str, Path | bytes]:
    if isinstance(path, (bytes, bytearray, memoryview)):
        return "the image", bytes(path)
    path = Path(path)
    if not path.is_file():
        raise ImageInputError("no image was given: choose a sample, upload a file or draw")
    return path.name, path


def _open_header(source: Path | io.BytesIO, name: str) -> Image.Image:
    """Pillow's lazy open (header only), limited to FORMATS."""
    try:
        with warnings.catch_warnings():  # Pillow's bomb *warning*: our own limit decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(source, formats=FORMATS)
    except Image.DecompressionBombError:
        raise
    except Exception as exc:  # any failure to identify the header: not an image we accept
        raise ImageInputError(f"{name} is not an image in an accepted format ({ACCEPTED})") from exc


def _announced_size(source: Path | io.BytesIO) -> tuple[int, int] | None:
    """The width and height a header announces, read by its format's plugin as `Image.open`
    does, but without the bomb check that `open` makes before any caller sees the size; None
    where the plugin checks again itself (a GIF's first frame larger than its screen)."""
    with source.open("rb") if isinstance(source, Path) else source as fp:
        prefix = fp.read(16)
        for format_name in FORMATS:  # the plugins are registered: open() just used them
            factory, accept = Image.OPEN[format_name]
            if accept is None or accept(prefix) is True:
                fp.seek(0)
                try:
                    with factory(fp, "") as image:
                        return image.size
                except Image.DecompressionBombError:
                    return None
    return None  # not reached: open() found a format above


def check_complete(path: Path | str | bytes, format_name: str | None) -> None:
    """ValueError for a file (checked by `check_file`) that ends early where Pillow's decoder
    does not notice: a PNG whose last chunks are missing or cut (every chunk's checksum, up to
    IEND's own), a GIF without its trailer byte. The file is at most MAX_BYTES: read whole."""
    if format_name not in ("PNG", "GIF"):
        return
    data = _source(path)[1]
    raw = data if isinstance(data, bytes) else data.read_bytes()
    if format_name == "GIF" and not raw.endswith(GIF_TRAILER):
        raise ValueError("the GIF has no trailer: the file ends early")
    if format_name == "PNG":
        with Image.open(io.BytesIO(raw), formats=("PNG",)) as png:
            png.verify()  # reads each chunk and checks its checksum, up to IEND's type
        end = raw.rfind(b"IEND")
        if raw[end + 4 : end + 8] != PNG_IEND_CRC:
            raise ValueError("the PNG's last chunk is cut: the file ends early")


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"
