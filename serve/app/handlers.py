"""The web app's event handlers: read the chosen image, run a model, stream the picture.

Used by `serve.app.layout`, which lays out the page and wires these to its events
(`python -m serve`, `make serve`); the `/complete` API endpoint's handler is here too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import gradio as gr
import numpy as np

from rowgen import contract
from rowgen.pictures import panel, side_by_side, to_uint8
from serve.app.gallery import GalleryImage
from serve.app.images import ImageInputError, load_sketch, load_upload
from serve.app.outputs import CacheSweeper, PngFiles
from serve.app.sampling import check_sampling, draw_samples
from serve.runtime import ONNXRUNTIME, Model, ModelSet

GALLERY, UPLOAD, DRAW = "Gallery", "Upload", "Draw"
MEAN, SAMPLE = "mean", "sample"
DEFAULT_SAMPLES = 4
SCALE = 8  # each pixel shown as an 8x8 block


def check_known_rows(value: object) -> int:
    """A whole number in 1..27, or ValueError saying what is allowed."""
    lo, hi = contract.KNOWN_ROWS_MIN, contract.KNOWN_ROWS_MAX
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):  # an int too large for a float overflows
        number = math.nan
    if not (number.is_integer() and lo <= number <= hi):
        raise ValueError(f"known rows must be a whole number from {lo} to {hi}, got {value!r}")
    return int(number)


def picture(original: np.ndarray, completed: np.ndarray, k: int, rows_done: int) -> np.ndarray:
    """Original, masked and completed (rows >= rows_done still black), enlarged, side by side.

    completed: (28, 28), or (S, 28, 28) for S samples shown one beside the other.
    """
    shown = completed.copy().reshape(-1, *original.shape)
    shown[:, rows_done:] = 0.0
    scale = SCALE if len(shown) == 1 else SCALE // 2
    first = [panel(original, k, scale), panel(original, k, scale, masked=True)]
    return side_by_side(first + [panel(s, k, scale) for s in shown])


def summary(model: Model, k: int, seconds: float, mse: float | None) -> str:
    generated = contract.IMAGE_SIZE - k
    parts = [
        f"**{model.name}** ({model.config.cell}, {model.config.mode})",
        f"{model.backend} on {', '.join(model.providers)}",
        f"{k} known rows, {generated} generated in {seconds * 1000:.1f} ms",
    ]
    if mse is not None:
        parts.append(f"MSE of the generated rows vs the original: {mse:.4f}")
    return " · ".join(parts)


class Handlers:
    """The app's event handlers, bound to the served models and the gallery."""

    def __init__(
        self, models: ModelSet, gallery: list[GalleryImage], pngs: PngFiles | None = None
    ) -> None:
        self.models = models
        self.gallery = gallery
        self.pngs = PngFiles() if pngs is None else pngs  # outputs go out as files: see why there
        self.cache: CacheSweeper | None = None  # set by build_app, once gradio's cache is known

    def pick(self, evt: gr.SelectData) -> tuple[int, str]:
        """A click on the gallery: the index of the image it chose, and a line naming it."""
        chosen = self.gallery[int(evt.index)]
        return int(evt.index), f"Chosen: **{chosen.label}** (test image #{chosen.index})"

    def model(self, name: str, backend: str = ONNXRUNTIME) -> Model:
        try:
            return self.models.get(name, backend)
        except (KeyError, ValueError) as exc:
            raise gr.Error(exc.args[0]) from exc

    def sweep(self) -> None:
        if self.cache is not None:
            self.cache.sweep()

    def read_input(
        self, source: str, picked: int | None, upload: str | None, sketch: object, invert: bool
    ) -> tuple[np.ndarray, bool]:
        """The (28, 28) image to complete, and whether it is a whole original (for the MSE)."""
        try:
            if source == DRAW:
                return load_sketch(sketch), False
            if source == UPLOAD:
                image = load_upload(upload, invert)
                if not invert and image.mean() > 0.5:
                    gr.Warning("This looks like dark on light: tick 'Invert' for best results.")
                return image, True
        except ImageInputError as exc:
            raise gr.Error(str(exc)) from exc
        if picked is None or not 0 <= int(picked) < len(self.gallery):
            raise gr.Error("no image chosen: click an image in the gallery first")
        return self.gallery[int(picked)].image, True

    def stream(
        self,
        source: str,
        picked: int | None,
        upload: str | None,
        sketch: object,
        invert: bool,
        known_rows: float,
        model_name: str,
        backend: str,
        mode: str = MEAN,
        samples: float = DEFAULT_SAMPLES,
        temperature: float = 1.0,
        seed: float = 0,
    ) -> Iterator[tuple[np.ndarray, str]]:
        """Yield (picture, summary) as the rows arrive through `step.onnx` (or `step.ts`).

        mode "sample": `samples` draws of `sample.onnx` from `seed`, shown side by side.
        """
        self.sweep()
        try:
            k = check_known_rows(known_rows)
            drawn = check_sampling(samples, temperature, seed) if mode == SAMPLE else None
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc
        model = self.model(model_name, backend)
        original, whole = self.read_input(source, picked, upload, sketch, invert)
        if drawn is not None:
            yield from self.stream_samples(model, original, k, *drawn)
            return
        completed = np.zeros_like(original)
        rows = model.stream(original[None], np.array([k]))
        busy = 0.0  # model time only: the pauses at each `yield` are gradio's
        while True:
            start = time.perf_counter()
            item = next(rows, None)
            busy += time.perf_counter() - start
            if item is None:
                break
            r, row = item
            completed[r] = row[0]
            if r >= k - 1:  # the known rows at once, then each generated row as it comes
                frame = self.pngs.write(picture(original, completed, k, r + 1))
                yield frame, summary(model, k, busy, None)
        mse = float(np.mean((completed[k:] - original[k:]) ** 2)) if whole else None
        final = self.pngs.write(picture(original, completed, k, contract.IMAGE_SIZE))
        yield final, summary(model, k, busy, mse)

    def draw(self, model: Model, image: np.ndarray, k: int, n: int, temp: float, seed: int):
        try:
            return draw_samples(model, self.models, image, k, n, temp, seed)
        except ValueError as exc:
            raise gr.Error(str(exc)) from exc

    def stream_samples(
        self, model: Model, original: np.ndarray, k: int, n: int, temp: float, seed: int
    ) -> Iterator[tuple[np.ndarray, str]]:
        """The mean, then the samples of one `sample.onnx` call, their rows shown in turn; the
        time is the model's for the samples alone."""
        start = time.perf_counter()
        drawn = self.draw(model, original, k, n, temp, seed)
        seconds = time.perf_counter() - start
        mean = model.complete(original[None], np.array([k]))  # (1, 28, 28)
        completed = np.concatenate([mean, drawn])
        note = f"third panel: the mean; then {n} sample(s), temperature {temp:g}, seed {seed}"
        for r in range(k - 1, contract.IMAGE_SIZE):
            frame = self.pngs.write(picture(original, completed, k, r + 1))
            yield frame, summary(model, k, seconds, None) + " · " + note

    def complete_api(
        self,
        image: str | None,
        known_rows: float,
        model_name: str,
        mode: str = MEAN,
        samples: float = 1,
        temperature: float = 1.0,
        seed: float = 0,
    ) -> str:
        """The `/complete` endpoint: an image file -> a PNG of the completed 28x28 image.

        mode "sample": `samples` sampled completions from `seed`, side by side (28 x 28 * n).
        """
        self.sweep()
        try:
            k = check_known_rows(known_rows)
            if mode not in (MEAN, SAMPLE):
                raise ValueError(f"mode must be {MEAN!r} or {SAMPLE!r}, got {mode!r}")
            drawn = check_sampling(samples, temperature, seed) if mode == SAMPLE else None
            grid = load_upload(image)
        except (ValueError, ImageInputError) as exc:
            raise gr.Error(str(exc)) from exc
        model = self.model(model_name)
        if drawn is not None:
            strip = np.concatenate(list(self.draw(model, grid, k, *drawn)), axis=1)
            return self.pngs.write(to_uint8(strip))
        return self.pngs.write(to_uint8(model.complete(grid[None], np.array([k]))[0]))
