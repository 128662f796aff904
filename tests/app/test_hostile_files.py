"""serve.app.image_files against files made to hurt: headers announcing far more pixels than
Pillow's own bomb limit (the app's message, with the size), and files that end early where
Pillow's decoder would not notice (a PNG without its last chunks, a GIF without its trailer)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio.data_classes import FileData
from PIL import Image

from serve.app import images
from serve.app.image_files import MAX_PIXELS, check_file
from serve.app.sketchpad import checked_sketchpad
from tests.app.test_app import png_with_size

PILLOW_BOMB = 2 * Image.MAX_IMAGE_PIXELS  # Image.open refuses more, naming no size


def gif_with_size(path: Path, width: int, height: int) -> Path:
    """A 1x1 GIF whose logical screen and first frame claim width x height."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    data[6:10] = struct.pack("<HH", width, height)  # the logical screen
    frame = data.index(b",")  # the first image descriptor
    data[frame + 5 : frame + 9] = struct.pack("<HH", width, height)
    path.write_bytes(bytes(data))
    return path


def test_a_gif_whose_first_frame_outgrows_its_screen_gets_the_apps_message() -> None:
    """Found by the image fuzzer: a small screen, a first frame past Pillow's bomb limit."""
    data = b"GIF87a\x00%\x01\x00\x81\x00\x00___" + b"\x00" * 9 + b",\x00\x00\x00\x00\x01\x00"
    data += b"\x01J\x00\x08\x04\x00\x01\x04\x04\x00;"
    with pytest.raises(images.ImageInputError, match=f"over the limit of {MAX_PIXELS:,} pixels"):
        images.load_upload(data)


@pytest.mark.parametrize(("make", "size"), [(png_with_size, 20_000), (gif_with_size, 65_535)])
def test_a_bomb_past_pillows_limit_gets_the_apps_message(tmp_path: Path, make, size) -> None:
    assert size * size > PILLOW_BOMB
    path = make(tmp_path / f"bomb.{make.__name__[:3]}", size, size)
    expected = f"the image is {size}x{size} pixels; the limit is {MAX_PIXELS:,} pixels"
    for source in (path, path.read_bytes()):
        with pytest.raises(images.ImageInputError) as refused:
            images.load_upload(source)
        assert str(refused.value) == expected
    with gr.Blocks():
        pad = checked_sketchpad("draw", "sketch")
    with pytest.raises(gr.Error, match=f"{size}x{size} pixels; the limit"):
        pad.convert_and_format_image(FileData(path=str(path)), flatten_on_white=True)


def encoded(format_name: str) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray((rng.random((40, 40)) * 255).astype(np.uint8), "L").save(buffer, format_name)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("format_name", "cut"),
    [("PNG", 1), ("PNG", 4), ("PNG", 12), ("PNG", 20), ("GIF", 1), ("GIF", 2)],
)
def test_a_file_that_ends_early_is_refused(tmp_path: Path, format_name: str, cut: int) -> None:
    """Cuts Pillow decodes without a word: the end of IEND, IEND, the IDAT checksum, the trailer."""
    whole = encoded(format_name)
    assert images.load_upload(whole).shape == (28, 28)
    check_file(whole[:-cut])[1].close()  # the header alone is fine
    path = tmp_path / f"cut.{format_name.lower()}"
    path.write_bytes(whole[:-cut])
    for source in (path, whole[:-cut]):
        with pytest.raises(images.ImageInputError, match="corrupt or truncated"):
            images.load_upload(source)
