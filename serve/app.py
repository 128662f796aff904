"""The web app: pick, upload or draw an image, and watch a model complete it row by row.

Handlers on top, one `gr.Blocks` layout in `build_app`, events at its bottom; nothing is done at
import time. Run it with `python -m serve` (`make serve`); `launch` is shared by the entry point,
the tests and `python -m bench.load`. Also serves the named API endpoint `/complete`.
"""

from __future__ import annotations

import json
import math
import socket
import time
from collections.abc import Iterator

import gradio as gr
import numpy as np

from rowgen import contract
from rowgen.pictures import panel, side_by_side, to_uint8
from rowgen.sampling import MAX_SAMPLES, MAX_TEMPERATURE
from serve.gallery import Sample, load_samples
from serve.images import MAX_BYTES, ImageInputError, load_sketch, load_upload
from serve.outputs import CacheSweeper, PngFiles
from serve.runtime import ONNXRUNTIME, Model, ModelSet
from serve.sampled import check_sampling, draw_samples
from serve.sketchpad import checked_sketchpad

GALLERY, UPLOAD, DRAW = "Gallery", "Upload", "Draw"
MEAN, SAMPLE = "mean", "sample"
DEFAULT_SAMPLES = 4
DEFAULT_KNOWN_ROWS = 14
SCALE = 8  # each pixel shown as an 8x8 block
UI_CONCURRENCY, API_CONCURRENCY = 4, 8  # requests run at once per event (sessions are shared)
CSS = "#result img, #gallery img { image-rendering: pixelated; }"
# gradio's cache of uploads and output files: every CACHE_SWEEP_S seconds, files older than
# CACHE_AGE_S go. An upload must outlive its wait in the queue, hence minutes, not seconds.
CACHE_SWEEP_S, CACHE_AGE_S = 60, 600
NEVER_S = 10**9  # gradio's periodic sweep, off (serve.outputs.CacheSweeper does it instead)


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


def offline_theme() -> gr.themes.Base:
    """gradio's default look with system fonts only: the page loads with nothing from outside."""
    return gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
    )


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
    """The app's event handlers, bound to the served models and the sample gallery."""

    def __init__(
        self, models: ModelSet, samples: list[Sample], pngs: PngFiles | None = None
    ) -> None:
        self.models = models
        self.samples = samples
        self.pngs = PngFiles() if pngs is None else pngs  # outputs go out as files: see why there
        self.cache: CacheSweeper | None = None  # set by build_app, once gradio's cache is known

    def pick_sample(self, evt: gr.SelectData) -> tuple[int, str]:
        chosen = self.samples[int(evt.index)]
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
        self, source: str, sample: int | None, upload: str | None, sketch: object, invert: bool
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
        if sample is None or not 0 <= int(sample) < len(self.samples):
            raise gr.Error("no image chosen: click a sample in the gallery first")
        return self.samples[int(sample)].image, True

    def stream(
        self,
        source: str,
        sample: int | None,
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
        original, whole = self.read_input(source, sample, upload, sketch, invert)
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
        """The samples come from one `sample.onnx` call; their rows are then shown in turn."""
        start = time.perf_counter()
        completed = self.draw(model, original, k, n, temp, seed)
        seconds = time.perf_counter() - start
        note = f"{n} sample(s), temperature {temp:g}, seed {seed}"
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


def build_app(
    models: ModelSet,
    samples: list[Sample] | None = None,
    cache_sweep: tuple[float, float] = (CACHE_SWEEP_S, CACHE_AGE_S),
    pngs: PngFiles | None = None,
) -> gr.Blocks:
    """The whole UI over `models`; launch it with `launch`.

    cache_sweep: (every s, files older than s) for gradio's cache, emptied of the app's files
    at exit. pngs: where output pictures go (default: a new `PngFiles`).
    """
    handlers = Handlers(models, load_samples() if samples is None else samples, pngs)
    backend_choices = [(f"{b} ({', '.join(models.providers)})", b) for b in models.backends[:1]]
    backend_choices += [(b, b) for b in models.backends[1:]]
    with gr.Blocks(
        title="rowgen: image completion",
        analytics_enabled=False,
        delete_cache=(NEVER_S, NEVER_S),  # only its clean-up at shutdown
    ) as demo:
        handlers.cache = CacheSweeper(demo, *cache_sweep)
        gr.Markdown(
            "## rowgen: complete a Fashion-MNIST image from its top rows\n"
            "Choose an image, how many top rows the model sees, and a model; the rest is "
            "generated one row at a time (red line: where generation starts)."
        )
        # Set in the browser by the tab events below, so a quick click on Complete never races
        # a server round trip (a gr.State would be updated on the server).
        source = gr.Textbox(GALLERY, visible=False)
        sample = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                with gr.Tabs():
                    with gr.Tab(GALLERY) as gallery_tab:
                        chosen = gr.Markdown("Fashion-MNIST test images: click one.")
                        gallery = gr.Gallery(
                            [(s.thumbnail(), s.label) for s in handlers.samples],
                            show_label=False,
                            columns=5,
                            allow_preview=False,
                            interactive=False,
                            height="auto",
                            buttons=[],
                            format="png",
                            elem_id="gallery",
                        )
                    with gr.Tab(UPLOAD) as upload_tab:
                        upload = gr.File(label="Image file", file_types=["image"], type="filepath")
                        invert = gr.Checkbox(label="Invert (a dark drawing on a light background)")
                    with gr.Tab(DRAW) as draw_tab:
                        sketch = checked_sketchpad(
                            "Draw dark on light; the top rows are what the model sees", "sketch"
                        )
                known_rows = gr.Slider(
                    contract.KNOWN_ROWS_MIN,
                    contract.KNOWN_ROWS_MAX,
                    value=DEFAULT_KNOWN_ROWS,
                    step=1,
                    label="Known rows",
                )
                model = gr.Dropdown(models.names, value=models.best, label="Model")
                backend = gr.Dropdown(backend_choices, value=ONNXRUNTIME, label="Backend")
                with gr.Accordion("Mean or samples", open=True):
                    mode = gr.Radio(
                        [MEAN, SAMPLE],
                        value=MEAN,
                        label="Completion",
                        elem_id="mode",
                        info="mean: the one best guess (blurry where several bottoms fit); "
                        "sample: drawn completions (models with sample.onnx)",
                    )
                    with gr.Row():
                        samples = gr.Slider(
                            1, MAX_SAMPLES, value=DEFAULT_SAMPLES, step=1, label="Samples"
                        )
                        temperature = gr.Slider(
                            0.0, MAX_TEMPERATURE, value=1.0, step=0.05, label="Temperature"
                        )
                        seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                run = gr.Button("Complete", variant="primary", elem_id="run")
            with gr.Column(scale=1):
                result = gr.Image(
                    label="original · masked · completed",
                    format="png",
                    interactive=False,
                    buttons=["download", "fullscreen"],
                    elem_id="result",
                )
                stats = gr.Markdown(elem_id="stats")
        with gr.Row(visible=False):  # the inputs and output of the /complete API endpoint
            api_image = gr.File(type="filepath")
            api_rows = gr.Number(value=DEFAULT_KNOWN_ROWS, precision=0)
            api_model = gr.Textbox(value=models.best)
            api_mode = gr.Textbox(value=MEAN)
            api_samples = gr.Number(value=1, precision=0)
            api_temperature = gr.Number(value=1.0)
            api_seed = gr.Number(value=0, precision=0)
            api_out = gr.Image(label="completed", format="png", image_mode="L")
            api_button = gr.Button()

        for tab, name in ((gallery_tab, GALLERY), (upload_tab, UPLOAD), (draw_tab, DRAW)):
            tab.select(None, None, source, js=f"() => {json.dumps(name)}")
        inputs = [source, sample, upload, sketch, invert, known_rows, model, backend]
        inputs += [mode, samples, temperature, seed]
        stream = {"api_visibility": "undocumented", "concurrency_limit": UI_CONCURRENCY}
        gallery.select(
            handlers.pick_sample, None, [sample, chosen], api_visibility="undocumented"
        ).then(handlers.stream, inputs, [result, stats], **stream)  # a click runs the sample
        run.click(handlers.stream, inputs, [result, stats], **stream)
        api_button.click(
            handlers.complete_api,
            [api_image, api_rows, api_model, api_mode, api_samples, api_temperature, api_seed],
            api_out,
            api_name="complete",
            concurrency_limit=API_CONCURRENCY,
        )
    return demo


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now, for in-process servers (tests, `bench.load`)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, block: bool = True):
    """Start the server: offline theme, no SSR (no Node), upload limit, errors shown to users."""
    return demo.launch(
        server_name=host,
        server_port=port,
        prevent_thread_lock=not block,
        show_error=True,
        quiet=not block,
        ssr_mode=False,
        max_file_size=MAX_BYTES,  # gradio refuses larger uploads; serve.images checks again
        theme=offline_theme(),
        css=CSS,
    )
