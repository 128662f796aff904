"""serve.app.images on real files made here: pixel meaning, modes, frames, rotation, limits."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio.data_classes import FileData
from PIL import Image, ImageFile

from serve.app import images
from serve.app.sketchpad import checked_sketchpad


def save(image: Image.Image, path: Path, **params) -> Path:
    image.save(path, **params)
    return path


def halves(mode: str, left, right, size: tuple[int, int] = (40, 40)) -> Image.Image:
    """An image whose left half is `left` and right half `right` (pixel values of `mode`)."""
    image = Image.new(mode, size, left)
    image.paste(right, (size[0] // 2, 0, size[0], size[1]))
    return image


def test_sixteen_bit_is_scaled_by_its_range_not_its_maximum(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 4000, 64), (64, 1)).astype(np.uint16)  # a dark 16-bit scan
    path = save(Image.fromarray(ramp), tmp_path / "dark16.png")
    assert Image.open(path).mode == "I;16"
    grid = images.load_upload(path)
    assert 0.05 < grid.max() <= 4000 / 65535 + 0.01  # dark stays dark (not stretched to 1.0)
    assert grid[14, 1] < grid[14, 26]  # and the gradient still rises left to right
    bright = save(Image.fromarray(np.full((8, 8), 65535, np.uint16)), tmp_path / "white16.png")
    assert images.load_upload(bright).min() == 1.0


def test_float_images_in_unit_range(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 0.5, 32, dtype=np.float32), (32, 1))
    path = save(Image.fromarray(ramp, "F"), tmp_path / "float.tiff")
    grid = images.load_upload(path)
    assert abs(grid.max() - 0.5) < 0.02 and grid[14, 0] < 0.05


@pytest.mark.parametrize(
    ("value", "message"),
    [(np.nan, "NaN"), (np.inf, "infinite"), (-np.inf, "infinite"), (-0.25, "negative"),
     (3.0, r"must lie in \[0, 1\].*3")],
)  # fmt: skip
def test_float_values_out_of_range_are_named(tmp_path: Path, value: float, message: str) -> None:
    array = np.full((300, 20), 0.5, np.float32)
    array[290, 7] = value  # one bad pixel, past the first strip of rows checked
    path = save(Image.fromarray(array, "F"), tmp_path / "bad.tiff")
    with pytest.raises(images.ImageInputError, match=message):
        images.load_upload(path)


def test_integer_values_out_of_range_are_named(tmp_path: Path) -> None:
    for value, message in ((-5, "negative"), (70000, r"must lie in \[0, 65535\]")):
        array = np.full((20, 20), 100, np.int32)
        array[3, 3] = value
        path = save(Image.fromarray(array, "I"), tmp_path / f"int{value}.tiff")
        with pytest.raises(images.ImageInputError, match=message):
            images.load_upload(path)


def test_animated_gif_uses_its_first_frame(tmp_path: Path) -> None:
    first = Image.new("L", (28, 28), 0)
    first.paste(255, (0, 0, 14, 28))  # left half white
    second = Image.new("L", (28, 28), 255)
    path = save(first, tmp_path / "anim.gif", save_all=True, append_images=[second], duration=50)
    assert Image.open(path).n_frames == 2
    grid = images.load_upload(path)
    assert grid[:, :12].min() > 0.95 and grid[:, 16:].max() < 0.05


def test_exif_rotation_is_applied(tmp_path: Path) -> None:
    stored = halves("L", 255, 0, (56, 28))  # stored landscape: left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display": the left half is the top when shown
    path = save(stored, tmp_path / "rotated.jpg", exif=exif, quality=95)
    grid = images.load_upload(path)  # shown portrait 28x56 -> 14x28, centred
    assert grid[3, 14] > 0.9 and grid[24, 14] < 0.1
    assert grid[14, 2] == 0.0 and grid[14, 25] == 0.0  # the margins of a portrait picture


@pytest.mark.parametrize("suffix", ["png", "gif"])
def test_palette_with_transparency(tmp_path: Path, suffix: str) -> None:
    palette = halves("P", 0, 1)
    palette.putpalette([255, 255, 255, 255, 255, 255] + [0] * 762)  # both entries white
    path = save(palette, tmp_path / f"palette.{suffix}", transparency=0)  # entry 0 see-through
    grid = images.load_upload(path)
    assert grid[:, 3:10].max() == 0.0, "transparent is background (black)"
    assert grid[:, 18:25].min() > 0.95


def test_gray_with_alpha(tmp_path: Path) -> None:
    la = Image.merge("LA", [Image.new("L", (40, 40), 255), halves("L", 0, 255)])
    grid = images.load_upload(save(la, tmp_path / "la.png"))
    assert grid[:, 3:10].max() == 0.0 and grid[:, 18:25].min() > 0.95
    drawn = images.load_upload(tmp_path / "la.png", invert=True)  # transparent is paper: white
    assert drawn[:, 3:10].max() == 0.0 and drawn[:, 18:25].max() == 0.0


def test_cmyk(tmp_path: Path) -> None:
    cmyk = halves("CMYK", (0, 0, 0, 0), (0, 0, 0, 255))  # left: no ink (white); right: black
    for name in ("cmyk.tiff", "cmyk.jpg"):
        grid = images.load_upload(save(cmyk, tmp_path / name))
        assert grid[:, 3:10].min() > 0.9 and grid[:, 18:25].max() < 0.1, name


def test_formats_outside_the_allow_list_are_refused(tmp_path: Path) -> None:
    for name in ("image.ppm", "image.ico", "image.pcx"):
        path = save(Image.new("L", (16, 16), 200), tmp_path / name)
        with pytest.raises(images.ImageInputError, match=r"accepted format.*PNG, JPEG"):
            images.load_upload(path)


def test_large_images_are_shrunk_before_any_conversion(monkeypatch, tmp_path: Path) -> None:
    """A JPEG is decoded at reduced scale; other formats are reduced before being converted."""
    loaded: list[tuple[str, tuple[int, int]]] = []
    converted: list[tuple[str, str, tuple[int, int]]] = []
    load, convert = ImageFile.ImageFile.load, Image.Image.convert

    def record_load(self):
        loaded.append((self.format, self.size))
        return load(self)

    def record_convert(self, mode=None, *args, **kwargs):
        converted.append((self.mode, mode, self.size))
        return convert(self, mode, *args, **kwargs)

    big = halves("RGB", (255, 255, 255), (0, 0, 0), (4000, 3000))
    save(big, tmp_path / "big.jpg", quality=90)
    save(big, tmp_path / "big.png")
    palette = halves("P", 0, 1, (4000, 3000))
    palette.putpalette([255, 255, 255, 0, 0, 0])  # entry 0 white, entry 1 black
    save(palette, tmp_path / "big.gif")
    monkeypatch.setattr(ImageFile.ImageFile, "load", record_load)
    monkeypatch.setattr(Image.Image, "convert", record_convert)
    for name in ("big.jpg", "big.png", "big.gif"):
        loaded.clear(), converted.clear()
        grid = images.load_upload(tmp_path / name)
        assert grid[10:18, 3:10].min() > 0.9 and grid[10:18, 18:25].max() < 0.1, name
        small = [c for c in converted if max(c[2]) < 2 * images.WORK_SIZE]
        full = [c for c in converted if c not in small]
        # Palette indices cannot be averaged: widened to LA, which `reduce` premultiplies.
        widened = [("P", "LA", (4000, 3000)), ("LA", "La", (4000, 3000))]
        assert full == (widened if name == "big.gif" else []), full
    assert loaded[0][0] == "GIF"
    images.load_upload(tmp_path / "big.jpg")
    assert loaded[-1] == ("JPEG", (500, 375)), "decoded at 1/8 scale"


def test_sketch_checked_like_an_upload(tmp_path: Path) -> None:
    huge = np.broadcast_to(np.uint8(255), (5000, 5000))  # no memory: a view of one byte
    with pytest.raises(images.ImageInputError, match="5000x5000 pixels; the limit"):
        images.load_sketch({"composite": huge})
    for bad, message in ((np.full((9, 9), np.nan), "NaN"), (np.full((9, 9), -1.0), "negative"),
                         (np.zeros((9, 9), np.int64), "int64"), (np.zeros((9, 9, 5), np.uint8),
                         "shape"), (np.array([["a"]]), "<U1")):  # fmt: skip
        with pytest.raises(images.ImageInputError, match=message):
            images.load_sketch({"composite": bad})
    dark_16 = np.full((28, 28), 65535, np.uint16)
    dark_16[:, 14:] = 0  # black ink on the right half, white paper on the left
    assert images.load_sketch(dark_16)[:, 16:].min() > 0.99


def test_sketchpad_refuses_a_bomb_before_gradio_decodes_it(tmp_path: Path) -> None:
    from tests.app.test_app import png_with_size

    with gr.Blocks():
        pad = checked_sketchpad("draw", "sketch")
    bomb = png_with_size(tmp_path / "canvas.png", 6000, 6000)
    payload = FileData(path=str(bomb), orig_name="canvas.png")
    with pytest.raises(gr.Error, match="6000x6000 pixels; the limit"):
        pad.convert_and_format_image(payload, flatten_on_white=True)
    with pytest.raises(gr.Error, match="accepted format"):
        pad.convert_and_format_image(b"GIF89a garbage", flatten_on_white=True)
    ok = save(Image.new("L", (280, 280), 255), tmp_path / "ok.png")
    white = pad.convert_and_format_image(FileData(path=str(ok)), flatten_on_white=True)
    assert np.asarray(white).min() == 255


@pytest.mark.parametrize("shape", [(1, 129), (129, 1), (1, 4000), (3, 3)])
def test_thin_strips_are_fitted_not_collapsed(shape: tuple[int, int]) -> None:
    """A strip far wider (or taller) than it is high still leaves at least one row (column)."""
    strip = Image.fromarray(np.full(shape, 255, np.uint8))  # white: the object
    grid = images.fit(strip)
    assert grid.shape == (28, 28) and grid.max() > 0.5
