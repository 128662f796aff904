"""Pictures of completions: enlarged crisp-pixel panels with the known/generated boundary marked.

numpy + Pillow only, shared by training (completion grid PNG), evaluation and the web app.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

BOUNDARY = (230, 40, 40)  # red line between the known rows and the generated ones
HATCH = (40, 48, 72)  # stripes standing for the hidden rows of the masked panel
LABEL_HEIGHT = 14


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float pixels in [0, 1] -> uint8 (rounded, clipped): the one conversion for every PNG."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _rgb(image: np.ndarray) -> np.ndarray:
    """(28, 28) float in [0, 1] -> (28, 28, 3) uint8."""
    return np.repeat(to_uint8(image)[:, :, None], 3, axis=2)


def panel(image: np.ndarray, known_rows: int, scale: int = 8, masked: bool = False) -> np.ndarray:
    """One enlarged image, nearest-neighbour, with a boundary line above row `known_rows`.

    masked=True hides rows >= known_rows behind diagonal stripes (what the model was given).
    """
    rgb = _rgb(image)
    big = rgb.repeat(scale, axis=0).repeat(scale, axis=1)  # (28s, 28s, 3)
    top = known_rows * scale
    if masked:
        yy, xx = np.mgrid[top : big.shape[0], 0 : big.shape[1]]
        stripes = ((xx + yy) // max(scale // 2, 1)) % 2 == 0
        big[top:] = np.where(stripes[:, :, None], np.array(HATCH, np.uint8), 0)
    line = max(scale // 4, 1)
    big[max(top - line // 2, 0) : max(top - line // 2, 0) + line] = BOUNDARY
    return big


def side_by_side(panels: list[np.ndarray], gap: int = 6) -> np.ndarray:
    """Panels of equal height in a row with a white gap between them."""
    height = panels[0].shape[0]
    spacer = np.full((height, gap, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for i, p in enumerate(panels):
        parts += [spacer, p] if i else [p]
    return np.concatenate(parts, axis=1)


def completion_grid(
    originals: np.ndarray,
    completed: np.ndarray,
    known_rows: int,
    labels: list[str],
    scale: int = 3,
    title: str = "",
) -> Image.Image:
    """A grid with one column per sample and three rows: original, masked, completed.

    originals, completed: (N, 28, 28) float in [0, 1]; labels: N column captions.
    """
    rows = [
        [panel(o, known_rows, scale) for o in originals],
        [panel(o, known_rows, scale, masked=True) for o in originals],
        [panel(c, known_rows, scale) for c in completed],
    ]
    grid = np.concatenate(
        [np.pad(side_by_side(r), ((0, 6), (0, 0), (0, 0)), constant_values=255) for r in rows]
    )
    cell = 28 * scale + 6
    head = LABEL_HEIGHT * (2 if title else 1)
    left = 70
    canvas = Image.new("RGB", (grid.shape[1] + left, grid.shape[0] + head), "white")
    canvas.paste(Image.fromarray(grid), (left, head))
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((left, 1), title, fill="black")
    for i, label in enumerate(labels):
        draw.text((left + i * cell, head - LABEL_HEIGHT + 1), label[:14], fill="black")
    for i, name in enumerate(("original", "masked", "completed")):
        draw.text((2, head + i * (28 * scale + 6) + 28 * scale // 2 - 6), name, fill="black")
    return canvas
