"""The Draw tab's canvas: gradio's sketchpad, ready to draw when shown, checked like an upload.

Two things gradio's own `gr.Sketchpad` does not do. It opens with no tool chosen ("select the
draw tool to start") unless it has a background, so the canvas starts on a white one, which is
also the paper that `serve.app.images.load_sketch` expects. And gradio decodes the submitted canvas
itself, with Pillow's decompression-bomb warning silenced; `checked_sketchpad` first checks each
submitted file's size, format and header pixels with `serve.app.image_files.check_file`, so a
drawing meets the limits an upload does. Used by `serve.app.layout` (`python -m serve`).
"""

from __future__ import annotations

import gradio as gr
import numpy as np
from gradio.data_classes import FileData

from serve.app.image_files import ImageInputError, check_file

CANVAS = (280, 280)  # width, height: 10 screen pixels per model pixel
BRUSH = 14  # about one and a half model pixels wide


def blank_canvas() -> dict:
    """A white page as the editor's value: its background makes the brush the active tool."""
    white = np.full((CANVAS[1], CANVAS[0]), 255, np.uint8)
    return {"background": white, "layers": [], "composite": None}


def checked_sketchpad(label: str, elem_id: str) -> gr.Sketchpad:
    """A black-pen sketchpad on a white page; each submitted file passes `check_file` first.

    The check wraps this one component's decoding method: a subclass would do the same, but
    gradio writes a `.pyi` stub next to the module of every Component subclass it imports.
    """
    pad = gr.Sketchpad(
        blank_canvas(),
        label=label,
        image_mode="L",
        canvas_size=CANVAS,
        fixed_canvas=True,
        layers=False,
        transforms=(),
        brush=gr.Brush(default_size=BRUSH, colors=["#000000"], color_mode="fixed"),
        elem_id=elem_id,
    )
    decode = pad.convert_and_format_image

    def checked_decode(file: FileData | bytes | None, flatten_on_white: bool = False):
        if file is not None:
            try:
                check_file(file.path if isinstance(file, FileData) else file)[1].close()
            except ImageInputError as exc:
                raise gr.Error(f"the drawing was refused: {exc}") from exc
        return decode(file, flatten_on_white)

    pad.convert_and_format_image = checked_decode  # type: ignore[method-assign]
    return pad
