"""Output pictures handed to gradio as PNG files of our own, one file per response.

Why not return numpy arrays: gradio caches those by content hash and rewrites the cached file in
place, so two requests that produce the same picture (the same gallery image, model and known
rows) race, and a download can read the file half written. A file path
is copied into gradio's cache by its race-free route instead (write aside, then rename).

Gradio copies a returned file before it answers, so ours only has to outlive that: the store
keeps at most `max_files` files and none older than `keep_seconds`, and its folder is deleted
by `close()`, or at the latest when the process exits.

gradio's cache of uploads and outputs is swept by `CacheSweeper` (see it for why not by
gradio's own `delete_cache`, which the app still turns on for its clean-up at shutdown).
Used by `serve.app.layout` (`python -m serve`).
"""

from __future__ import annotations

import atexit
import math
import os
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
EXIT_GRACE_S = 60.0


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


class CacheSweeper:
    """Deletes gradio's cached files older than `age_s`, then the empty folders they were in.

    gradio's own periodic sweep (`delete_cache`) iterates its sets of cached files while
    requests add to them; the first clash ("Set changed size during iteration") ends that
    task for good, within a minute of load, and the cache then grows for the rest of the
    server's life. This sweeper reads a snapshot of each set instead, and also removes the
    folder gradio made for each file, and the empty spool files its upload route leaves in the
    cache folder itself (one per upload). `sweep` is called on every
    request; a sweep is due at most every `every_s` and runs in a thread of its own, so no
    request waits for it. `close` (also run at exit) deletes every file this app put there:
    gradio's own clean-up at shutdown runs in its server thread, which the process may not
    wait for, leaving the cache full after SIGTERM.
    """

    def __init__(self, blocks, every_s: float, age_s: float) -> None:
        self.blocks, self.every_s, self.age_s = blocks, every_s, age_s
        self.root = Path(blocks.GRADIO_CACHE)
        self._next = time.monotonic() + every_s
        self._lock = threading.Lock()
        atexit.register(self.close)

    def sweep(self) -> None:
        """Start a sweep in the background if one is due."""
        with self._lock:
            if time.monotonic() < self._next:
                return
            self._next = time.monotonic() + self.every_s
        threading.Thread(target=self.sweep_now, name="cache-sweep", daemon=True).start()

    def close(self) -> None:
        """Delete every file the app has put in the cache (bar gradio's kept ones) now.

        Another server may share the folder (gradio's default is /tmp/gradio): its orphans
        younger than EXIT_GRACE_S, perhaps uploads in flight, stay.
        """
        self.sweep_now(tracked_cutoff=math.inf, orphan_cutoff=time.time() - EXIT_GRACE_S)

    def sweep_now(
        self, tracked_cutoff: float | None = None, orphan_cutoff: float | None = None
    ) -> int:
        """Delete cached files, orphans and empty folders last changed before the cutoffs
        (default: `age_s` ago); how many files were deleted."""
        cutoff = time.time() - self.age_s if tracked_cutoff is None else tracked_cutoff
        deleted = 0
        keep: set[str] = set()  # files a component shows (examples, initial values): gradio's rule
        for block in list(self.blocks.blocks.values()):
            keep.update(getattr(block, "keep_in_cache", ()))
        for files in list(self.blocks.temp_file_sets):
            for file in list(files):  # a snapshot: request threads add to the set meanwhile
                if file in keep:
                    continue
                try:
                    if os.lstat(file).st_ctime >= cutoff:  # gradio's own rule: a reuse touches it
                        continue
                    os.remove(file)
                    deleted += 1
                except FileNotFoundError:
                    pass
                files.discard(file)  # also keeps the set itself from growing for ever
        return deleted + sweep_folder(self.root, min(cutoff, orphan_cutoff or cutoff))


def sweep_folder(root: Path, cutoff: float) -> int:
    """Delete files directly in `root` and empty folders under it, last changed before `cutoff`.

    gradio keeps what it tracks one folder down, so a file at the top is an orphan; the cutoff
    spares a folder that gradio has just made and is about to fill.
    """
    deleted = 0
    for entry in root.iterdir() if root.is_dir() else ():
        try:
            if entry.lstat().st_mtime >= cutoff:
                continue
            if entry.is_dir():
                if not any(entry.iterdir()):
                    entry.rmdir()
            else:
                entry.unlink()
                deleted += 1
        except OSError:  # filled or removed meanwhile
            continue
    return deleted
