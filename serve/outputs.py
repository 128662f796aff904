"""Output pictures handed to gradio as PNG files of our own, one file per response.

Why not return numpy arrays: gradio caches those by content hash and rewrites the cached file in
place, so two requests that produce the same picture (the same gallery image, model and known
rows) race, and a download can read the file half written (seen under `make load`). A file path
is copied into gradio's cache by its race-free route instead (write aside, then rename).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

KEEP_SECONDS = 600  # gradio copies a returned file at once; ours only has to outlive that


class PngFiles:
    """Writes PNGs into a private temporary folder and deletes those older than KEEP_SECONDS."""

    def __init__(self, keep_seconds: float = KEEP_SECONDS) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="rowgen-out-"))
        self.keep_seconds = keep_seconds
        self._lock = threading.Lock()
        self._last_prune = time.monotonic()

    def write(self, image: np.ndarray) -> str:
        """(H, W) or (H, W, 3) uint8 -> path of a new PNG file."""
        path = self.folder / f"{uuid.uuid4().hex}.png"
        Image.fromarray(image).save(path, format="PNG")
        self._prune()
        return str(path)

    def _prune(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last_prune < self.keep_seconds / 10:
                return
            self._last_prune = now
        cutoff = time.time() - self.keep_seconds
        for old in self.folder.glob("*.png"):
            try:
                if old.stat().st_mtime < cutoff:
                    old.unlink()
            except FileNotFoundError:  # another request pruned it first
                continue

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
