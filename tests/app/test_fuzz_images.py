"""Property-based tests of serve.app.images: any input gives a 28x28 image or an ImageInputError.

Never another exception, and never a message-less one. Inputs: random bytes, real images of
every mode in every accepted format with random pixels (NaN and infinities included), the same
files damaged, and arrays of any dtype and shape as sketches. At least 200 examples each in
`make test`; a hypothesis profile (HYPOTHESIS_PROFILE=fuzz) raises that.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from serve.app import images
from serve.app.image_files import FORMATS

pytestmark = pytest.mark.filterwarnings(
    "ignore:Truncated File Read:UserWarning",  # Pillow's note on a damaged TIFF, then our error
    "ignore:Saving I mode images as PNG:DeprecationWarning",  # making inputs, not reading them
)
FUZZ = settings(
    max_examples=max(200, settings.default.max_examples),  # a loaded profile may ask for more
    deadline=None,  # the shared CI machine's speed varies; time is not the property here
    suppress_health_check=[HealthCheck.too_slow],
)
MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"]
SPECIAL = [0.0, 1.0, -1.0, 0.5, 255.0, 65535.0, 70000.0, np.nan, np.inf, -np.inf]


def outcome(make) -> str:
    """'ok' with a valid grid, or 'refused' with a message; anything else fails the test."""
    try:
        grid = make()
    except images.ImageInputError as exc:
        assert str(exc).strip(), "an ImageInputError without a message"
        return "refused"
    assert grid.shape == (28, 28) and grid.dtype == np.float32
    assert np.isfinite(grid).all() and grid.min() >= 0.0 and grid.max() <= 1.0
    return "ok"


@st.composite
def image_files(draw) -> bytes:
    """A real image file: any mode, any accepted format, random or extreme pixel values."""
    mode = draw(st.sampled_from(MODES))
    width, height = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if mode == "F":
        pixels = rng.choice(np.array(SPECIAL, np.float32), (height, width))
        if draw(st.booleans()):
            pixels = rng.random((height, width), np.float32)
        image = Image.fromarray(pixels, "F")
    elif mode in ("I", "I;16"):
        top = 2**16 if mode == "I;16" else 2**17
        low = 0 if mode == "I;16" else -(2**10)
        image = Image.fromarray(rng.integers(low, top, (height, width)).astype(np.int32), "I")
        image = image.convert(mode) if mode == "I;16" else image
    else:
        size = len(Image.new(mode, (width, height)).tobytes())
        image = Image.frombytes(mode, (width, height), rng.bytes(size))
    buffer = io.BytesIO()
    fmt = draw(st.sampled_from(FORMATS))
    try:
        image.save(buffer, format=fmt)
    except (OSError, ValueError, KeyError):  # this format cannot hold this mode
        image.convert("RGB").save(buffer, format=fmt)
    return buffer.getvalue()


@st.composite
def damaged(draw) -> bytes:
    """A real image file with bytes overwritten, cut short or both."""
    data = bytearray(draw(image_files()))
    for _ in range(draw(st.integers(0, 8))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(data: bytes) -> None:
    outcome(lambda: images.load_upload(data))


@FUZZ
@given(image_files(), st.booleans())
def test_real_images_of_every_mode_and_format(data: bytes, invert: bool) -> None:
    outcome(lambda: images.load_upload(data, invert))


@FUZZ
@given(damaged())
def test_damaged_images(data: bytes) -> None:
    outcome(lambda: images.load_upload(data))


SKETCH_DTYPES = st.sampled_from(
    [np.uint8, np.uint16, np.int32, np.int64, np.float32, np.float64, np.bool_, np.complex64]
)


@FUZZ
@given(hnp.arrays(SKETCH_DTYPES, hnp.array_shapes(min_dims=1, max_dims=4, max_side=24)))
def test_sketch_arrays_of_any_dtype_and_shape(array: np.ndarray) -> None:
    result = outcome(lambda: images.load_sketch({"composite": array}))
    if array.ndim not in (2, 3):
        assert result == "refused"
