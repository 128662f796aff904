"""Output pictures handed to gradio as PNG files of our own, one file per response.

Why not return numpy arrays: gradio caches those by content hash and rewrites the cached file in
place, so two requests that produce the same picture (the same gallery image, model and known
rows) race, and a download can read the file half written (seen under `make load`). A file path
is copied into gradio's cache by its race-free route instead (write aside, then rename).

Gradio copies a returned file before it answers, so ours only has to outlive that: the store
keeps at most `max_files` files and none older than `keep_seconds`, and its folder is deleted
by `close()`, or at the latest when the process exits.

gradio's own cache is swept by its `delete_cache`, which deletes old files but leaves the
folder each was in; `EmptyFolders` removes those, or a server running for weeks would gather
one folder per distinct upload. Used by `serve.app` (`python -m serve`).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections import deque
from pathlib import Path

import numpy as np
from PIL import Image

KEEP_SECONDS = 120.0  # far longer than gradio takes to copy a returned file
MAX_FILES = 2000  # about 40 MB of pictures at most, whatever the request rate


class PngFiles:
    """Writes PNGs into a private temporary folder, keeping only the newest files."""

    def __init__(
        self,
        keep_seconds: float = KEEP_SECONDS,
        max_files: int = MAX_FILES,
        root: Path | str | None = None,
    ) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="rowgen-out-", dir=root))
        self.keep_seconds = keep_seconds
        self.max_files = max_files
        self._written: deque[tuple[float, Path]] = deque()  # (monotonic time, path), oldest first
        self._lock = threading.Lock()
        # Deletes the folder when this object is collected or the interpreter exits, whichever
        # comes first; `close` runs it now.
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.folder, ignore_errors=True)

    def write(self, image: np.ndarray) -> str:
        """(H, W) or (H, W, 3) uint8 -> path of a new PNG file."""
        path = self.folder / f"{uuid.uuid4().hex}.png"
        Image.fromarray(image).save(path, format="PNG")
        now = time.monotonic()
        with self._lock:
            self._written.append((now, path))
            stale = []
            while self._written and (
                len(self._written) > self.max_files or now - self._written[0][0] > self.keep_seconds
            ):
                stale.append(self._written.popleft()[1])
        for old in stale:
            old.unlink(missing_ok=True)
        return str(path)

    def close(self) -> None:
        """Delete the folder and every file in it."""
        self._cleanup()


class EmptyFolders:
    """Removes empty folders directly under `root` untouched for `age_s`, at most every `every_s`.

    `sweep` is called on every request: most calls only read the clock. The age keeps a folder
    that gradio has just made, and is about to fill, out of reach.
    """

    def __init__(self, root: Path | str, every_s: float, age_s: float) -> None:
        self.root, self.every_s, self.age_s = Path(root), every_s, age_s
        self._next = time.monotonic() + every_s
        self._lock = threading.Lock()

    def sweep(self) -> int:
        """Remove the old empty folders if a sweep is due; how many were removed."""
        with self._lock:
            if time.monotonic() < self._next:
                return 0
            self._next = time.monotonic() + self.every_s
        cutoff, removed = time.time() - self.age_s, 0
        for folder in self.root.glob("*/"):
            try:
                if folder.stat().st_mtime < cutoff and not any(folder.iterdir()):
                    folder.rmdir()
                    removed += 1
            except OSError:  # filled or removed meanwhile: not empty, or not ours to remove
                continue
        return removed
