"""Disk use of the app over HTTP: temporary folders stay bounded, and are emptied at shutdown.

Requests go through gradio_client to `/complete` and to the streaming event (`/stream`, what
the Complete button calls), with gradio's cache (GRADIO_TEMP_DIR) and the app's PNG store in
folders of the test's own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from bench.soak import folder_usage
from serve.app.handlers import MEAN, UPLOAD
from serve.app.layout import build_app, free_port, launch
from serve.app.outputs import CacheSweeper, PngFiles
from serve.runtime import load_models

pytestmark = pytest.mark.filterwarnings("ignore:::gradio.queueing")

CLIENTS = 4
# Every 5 s, delete files older than 30 s: short, so a short test sees sweeps, but longer than
# a request lives on a busy machine (an upload swept before its turn, or a frame before the
# client fetched it, would fail the request; 12 s was too short on a loaded 2-core machine).
SWEEP = (5.0, 30.0)
MAX_PNGS = 30
MAX_BYTES = 4 * 2**20  # the fixed bound on gradio's folder: 400 requests send about 6 MiB
MAX_ENTRIES = 8000


def distinct_images(folder: Path, count: int) -> list[Path]:
    """`count` different small PNGs: uploads of equal bytes would share one cached file."""
    folder.mkdir()
    paths = []
    for i in range(count):
        image = np.zeros((28, 28), np.uint8)
        image[: 8 + i % 16, i % 28] = 255
        image[27, : i // 28 + 1] = 9
        paths.append(folder / f"in{i}.png")
        Image.fromarray(image).save(paths[-1])
    return paths


def drive(url: str, images: list[Path], downloads: Path, results: list) -> None:
    """One client: `/complete` and `/stream` in turn, one request per image."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=str(downloads))
    for i, image in enumerate(images):
        try:
            if i % 2:
                client.predict(handle_file(str(image)), 14, api_name="/complete")
                results.append(1)
            else:
                job = client.submit(UPLOAD, handle_file(str(image)), None, False, 14, "lstm",
                                    "onnxruntime", MEAN, 1, 1.0, 0, api_name="/stream")  # fmt: skip
                job.result()
                results.append(len(job.outputs()))
        except Exception as exc:  # counted: the test fails on any
            results.append(exc)


@pytest.mark.slow  # it waits out the 30 s sweep age on purpose: make test-all
@pytest.mark.parametrize("requests", [pytest.param(40, id="40"), pytest.param(400, id="400")])
def test_temporary_folders_stay_bounded(
    tiny_bundles: Path, tmp_path: Path, monkeypatch, requests: int
) -> None:
    cache = tmp_path / "gradio"
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(cache))
    pngs = PngFiles(max_files=MAX_PNGS, root=tmp_path)
    demo = build_app(load_models(tiny_bundles, "cpu"), cache_sweep=SWEEP, pngs=pngs)
    _, url, _ = launch(demo, port=free_port(), block=False)
    images = distinct_images(tmp_path / "in", requests + 1)
    peaks = {"cache": (0, 0), "pngs": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.2):
            size, count = folder_usage(cache)
            peaks["cache"] = max(peaks["cache"][0], size), max(peaks["cache"][1], count)
            peaks["pngs"] = max(peaks["pngs"], len(list(pngs.folder.glob("*.png"))))

    sampler = threading.Thread(target=sample)
    sampler.start()
    results: list = []
    try:
        clients = [
            threading.Thread(
                target=drive, args=(url, images[i:requests:CLIENTS], tmp_path / f"c{i}", results)
            )
            for i in range(CLIENTS)
        ]
        for client in clients:
            client.start()
        for client in clients:
            client.join()
        errors = [r for r in results if isinstance(r, Exception)]
        assert not errors, f"{len(errors)} of {requests} requests failed, e.g. {errors[0]!r}"
        frames = sum(results)
        assert len(results) == requests and frames > 5 * MAX_PNGS
        sent = folder_usage(tmp_path / "c0")[0] * CLIENTS  # about what went through gradio's cache
        time.sleep(sum(SWEEP) + 1.5)  # everything sent is now older than the sweep's age
        drive(url, images[-1:], tmp_path / "last", results)  # triggers one more sweep
        time.sleep(1.0)  # the sweep runs in the background
        left = [p for p in cache.rglob("*") if p.is_file()]
        kept = set().union(*(getattr(b, "keep_in_cache", set()) for b in demo.blocks.values()))
    finally:
        done.set()
        sampler.join()
        demo.close()
    size, count = peaks["cache"]
    assert size <= MAX_BYTES and count <= MAX_ENTRIES, f"gradio's cache reached {peaks}"
    print(f"{requests} requests, about {sent / 2**20:.1f} MiB out; peaks: {peaks}")
    assert peaks["pngs"] <= MAX_PNGS + CLIENTS  # a file is written before the oldest goes
    recent = [p for p in left if str(p) not in kept]
    assert len(recent) <= 25, f"{len(recent)} files outlived the sweep: {recent[:5]}"
    pngs.close()
    assert not pngs.folder.exists()


def test_server_empties_its_folders_when_stopped(tiny_bundles: Path, tmp_path: Path) -> None:
    """`python -m serve`, stopped by SIGTERM as a service manager would, leaves no outputs."""
    from gradio_client import Client, handle_file

    cache, tmp = tmp_path / "gradio", tmp_path / "tmp"
    tmp.mkdir()
    port = free_port()
    env = {**os.environ, "GRADIO_TEMP_DIR": str(cache), "TMPDIR": str(tmp)}
    command = [sys.executable, "-m", "serve", "--artifacts", str(tiny_bundles), "--device", "cpu",
               "--port", str(port)]  # fmt: skip
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                client = Client(f"http://127.0.0.1:{port}/", verbose=False,
                                download_files=str(tmp_path / "client"))  # fmt: skip
                break
            except Exception:
                assert server.poll() is None and time.monotonic() < deadline, "did not start"
                time.sleep(0.5)
        (image,) = distinct_images(tmp_path / "in", 1)
        frames = 0
        for _ in range(3):
            job = client.submit(UPLOAD, handle_file(str(image)), None, False, 14, "lstm",
                                "onnxruntime", MEAN, 1, 1.0, 0, api_name="/stream")  # fmt: skip
            job.result()
            frames += len(job.outputs())
        assert list(tmp.glob("rowgen-out-*/*.png")), "the outputs were not where expected"
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0, server.stdout.read().decode()
    finally:
        if server.poll() is None:
            server.kill()
    assert not list(tmp.glob("rowgen-out-*")), "the PNG store outlived the server"
    left = [p for p in cache.rglob("*") if p.is_file() and p.stat().st_size]
    assert frames > 40 and len(left) <= 25, f"{len(left)} cached files outlived the server"
    assert not [p for p in left if p.name == image.name], "the upload outlived the server"


def test_sweeper_reads_a_snapshot_while_requests_add_files(tmp_path: Path) -> None:
    """gradio's own sweep dies of 'Set changed size during iteration'; this one must not."""
    tracked: set[str] = set()
    kept = tmp_path / "kept" / "thumbnail.png"
    blocks = SimpleNamespace(GRADIO_CACHE=str(tmp_path), temp_file_sets=[tracked],
                             blocks={0: SimpleNamespace(keep_in_cache={str(kept)})})  # fmt: skip
    for i in range(2000):
        path = tmp_path / f"h{i}" / "frame.png"
        path.parent.mkdir()
        path.write_bytes(b"png")
        tracked.add(str(path))
    kept.parent.mkdir()
    kept.write_bytes(b"png")
    tracked.add(str(kept))
    orphan = tmp_path / "tmpspool"
    orphan.write_bytes(b"")
    os.utime(orphan, (time.time() - 3600,) * 2)
    stop = threading.Event()

    def add() -> None:  # a request thread registering new files meanwhile
        for i in range(20_000):
            if stop.is_set():
                return
            tracked.add(f"{tmp_path}/new/{i}.png")

    adder = threading.Thread(target=add)
    adder.start()
    try:
        deleted = CacheSweeper(blocks, 60, 600).sweep_now(tracked_cutoff=time.time() + 1)
    finally:
        stop.set()
        adder.join()
    assert deleted == 2001  # every tracked frame and the orphan
    assert kept.exists() and not orphan.exists()
    assert not any(p.is_file() for p in tmp_path.glob("h*/*"))
