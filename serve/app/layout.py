"""The web app: pick, upload or draw an image, and watch a model complete it row by row.

One `gr.Blocks` layout in `build_app`, its events (handled by `serve.app.handlers`) at its bottom;
nothing is done at import time. Run it with `python -m serve` (`make serve`); `launch` is shared
by the entry point, the tests and `python -m docs.screenshots`. Also serves the API endpoint
`/complete`.
"""

from __future__ import annotations

import json
import socket

import gradio as gr

from rowgen import contract
from rowgen.sampling import MAX_SAMPLES, MAX_TEMPERATURE
from serve.app.gallery import GalleryImage, load_gallery
from serve.app.handlers import DEFAULT_SAMPLES, DRAW, GALLERY, MEAN, SAMPLE, UPLOAD, Handlers
from serve.app.images import MAX_BYTES
from serve.app.outputs import CacheSweeper, PngFiles
from serve.app.sketchpad import checked_sketchpad
from serve.runtime import ONNXRUNTIME, ModelSet

DEFAULT_KNOWN_ROWS = 14
UI_CONCURRENCY, API_CONCURRENCY = 4, 8  # requests run at once per event (sessions are shared)
CSS = "#result img, #gallery img { image-rendering: pixelated; }"
# gradio's cache of uploads and output files: every CACHE_SWEEP_S seconds, files older than
# CACHE_AGE_S go. An upload must outlive its wait in the queue, hence minutes, not seconds.
CACHE_SWEEP_S, CACHE_AGE_S = 60, 600
NEVER_S = 10**9  # gradio's periodic sweep, off (serve.app.outputs.CacheSweeper does it instead)


def offline_theme() -> gr.themes.Base:
    """gradio's default look with system fonts only: the page loads with nothing from outside."""
    return gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
    )


def build_app(
    models: ModelSet,
    gallery: list[GalleryImage] | None = None,
    cache_sweep: tuple[float, float] = (CACHE_SWEEP_S, CACHE_AGE_S),
    pngs: PngFiles | None = None,
) -> gr.Blocks:
    """The whole UI over `models`; launch it with `launch`.

    cache_sweep: (every s, files older than s) for gradio's cache, emptied of the app's files
    at exit. pngs: where output pictures go (default: a new `PngFiles`).
    """
    handlers = Handlers(models, load_gallery() if gallery is None else gallery, pngs)
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
        picked = gr.State(None)  # the gallery image's index
        with gr.Row():
            with gr.Column(scale=1):
                with gr.Tabs():
                    with gr.Tab(GALLERY) as gallery_tab:
                        chosen = gr.Markdown("Fashion-MNIST test images: click one.")
                        gallery_view = gr.Gallery(
                            [(s.thumbnail(), s.label) for s in handlers.gallery],
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
                        "sample: the mean, then drawn completions (models with sample.onnx)",
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
        # The inputs and output of the /complete API endpoint. Its numbers reach the handler as
        # sent (gradio's precision=0 would round 14.5 to 14): whole numbers are checked there.
        with gr.Row(visible=False):
            api_image = gr.File(type="filepath")
            api_rows = gr.Number(value=DEFAULT_KNOWN_ROWS)
            api_model = gr.Textbox(value=models.best)
            api_mode = gr.Textbox(value=MEAN)
            api_samples = gr.Number(value=1)
            api_temperature = gr.Number(value=1.0)
            api_seed = gr.Number(value=0)
            api_out = gr.Image(label="completed", format="png", image_mode="L")
            api_button = gr.Button()

        for tab, name in ((gallery_tab, GALLERY), (upload_tab, UPLOAD), (draw_tab, DRAW)):
            tab.select(None, None, source, js=f"() => {json.dumps(name)}")
        inputs = [source, picked, upload, sketch, invert, known_rows, model, backend]
        inputs += [mode, samples, temperature, seed]
        stream = {"api_visibility": "undocumented", "concurrency_limit": UI_CONCURRENCY}
        gallery_view.select(
            handlers.pick, None, [picked, chosen], api_visibility="undocumented"
        ).then(handlers.stream, inputs, [result, stats], **stream)  # a click completes the image
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
        max_file_size=MAX_BYTES,  # gradio refuses larger uploads; serve.app.images checks again
        theme=offline_theme(),
        css=CSS,
    )
