"""Server-side dynamic batching: concurrent requests gathered into one model call. Torch-free.

Used by `serve.api.models` (the v2 API's `<bundle>` model): each request awaits
`MicroBatcher.submit` with its own images; a worker task waits at most `max_wait_s` after the first
request for more, up to `max_batch` images, runs them as one batch in a thread (onnxruntime
releases the GIL, so the event loop keeps parsing requests meanwhile), and hands each caller
exactly its own rows. A request that carries a batch is never split. Past `max_queue` waiting
images a request is refused at once with `QueueFull`: overload is answered, never queued without
end. Callers refuse requests larger than the queue before they get here (they could never be
served).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

BatchFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (images, known_rows) -> completed


class QueueFull(RuntimeError):
    """More images are waiting than the queue holds; the message says how many and what to do."""


@dataclass(frozen=True)
class BatchSettings:
    max_batch: int = 64  # images per model call; larger requests run alone, unsplit
    max_wait_s: float = 0.002  # how long the first request of a batch waits for company
    max_queue: int = 1024  # images waiting (not yet running) before requests are refused


@dataclass
class _Pending:
    image: np.ndarray  # (n, 28, 28)
    known_rows: np.ndarray  # (n,)
    future: asyncio.Future


@dataclass
class BatchStats:
    """Counters for the mean batch size: model calls, images and requests through them."""

    calls: int = 0
    images: int = 0
    requests: int = 0
    refused: int = 0

    def record(self, images: int, requests: int) -> None:
        self.calls += 1
        self.images += images
        self.requests += requests

    def as_dict(self) -> dict[str, float | int]:
        mean = self.images / self.calls if self.calls else 0.0
        return {
            "calls": self.calls,
            "images": self.images,
            "requests": self.requests,
            "refused": self.refused,
            "mean_batch": round(mean, 3),
        }


class MicroBatcher:
    """Gathers `submit` calls from one event loop into batched `run` calls, one at a time.

    The asyncio objects are made on first use, in the loop that serves the requests (a Ray Serve
    replica or kserve's server both own their loop).
    """

    def __init__(self, run: BatchFn, settings: BatchSettings | None = None) -> None:
        self.run = run
        self.settings = settings or BatchSettings()
        self.stats = BatchStats()
        self._queue: deque[_Pending] = deque()
        self._queued_images = 0
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None

    async def submit(self, image: np.ndarray, known_rows: np.ndarray) -> tuple[np.ndarray, int]:
        """image (n, 28, 28) float32, known_rows (n,) int64 -> (this request's completed rows,
        the number of images in the model call that computed them)."""
        n = len(image)
        limit = self.settings.max_queue
        if n > limit:
            raise ValueError(f"a request of {n} images exceeds the queue of {limit}")
        if self._queued_images + n > limit:
            self.stats.refused += 1
            raise QueueFull(
                f"server busy: {self._queued_images} images already queued (limit {limit}); "
                "retry shortly or add replicas"
            )
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._wakeup = asyncio.Event()
            self._worker = loop.create_task(self._work(), name="micro-batcher")
        pending = _Pending(image, known_rows, loop.create_future())
        self._queue.append(pending)
        self._queued_images += n
        self._wakeup.set()
        return await pending.future

    def _take(self) -> list[_Pending]:
        """Whole requests from the head of the queue, up to max_batch images (at least one)."""
        taken = [self._queue.popleft()]
        size = len(taken[0].image)
        while self._queue and size + len(self._queue[0].image) <= self.settings.max_batch:
            taken.append(self._queue.popleft())
            size += len(taken[-1].image)
        self._queued_images -= size
        return taken

    async def _work(self) -> None:
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                if self._queued_images < self.settings.max_batch and self.settings.max_wait_s > 0:
                    await self._gather()
                await self._run(self._take())

    async def _gather(self) -> None:
        """Wait up to max_wait_s for the queue to fill a batch (returns early once it does)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.max_wait_s
        assert self._wakeup is not None
        while self._queued_images < self.settings.max_batch:
            left = deadline - loop.time()
            if left <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), left)
            except TimeoutError:
                return

    async def _run(self, batch: list[_Pending]) -> None:
        images = np.concatenate([p.image for p in batch])  # (B, 28, 28)
        known_rows = np.concatenate([p.known_rows for p in batch])  # (B,)
        try:
            completed = await asyncio.to_thread(self.run, images, known_rows)
        except Exception as exc:  # every caller of the batch hears the failure
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            return
        self.stats.record(len(images), len(batch))
        start = 0
        for p in batch:
            stop = start + len(p.image)
            if not p.future.done():  # a caller that went away (cancelled) needs nothing
                p.future.set_result((completed[start:stop], len(images)))
            start = stop
