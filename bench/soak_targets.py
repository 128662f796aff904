"""What `bench.soak` drives: the served app and the v2 API, and the prompts it sends them.

A `Target` says which server to start (a kind of bench.servers) and how to call it; `TARGETS` are
the app's `/complete` and streaming endpoint through gradio_client, and the v2 API's `complete`
with JSON over urllib. Torch-free.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from rowgen import contract

KNOWN_ROWS = 14


def app_caller(url: str, images: list[Path], downloads: Path) -> Callable[[int], None]:
    """Requests to the web app: `/complete` and the streaming `/stream` in turn."""
    from gradio_client import Client, handle_file

    from serve.app.handlers import MEAN, UPLOAD

    client = Client(url, verbose=False, download_files=str(downloads))

    def call(i: int) -> None:
        image = handle_file(str(images[i % len(images)]))
        if i % 2:
            client.predict(image, KNOWN_ROWS, api_name="/complete")
        else:
            client.submit(UPLOAD, image, None, False, KNOWN_ROWS, "lstm", "onnxruntime",
                          MEAN, 1, 1.0, 0, api_name="/stream").result()  # fmt: skip

    return call


def api_caller(url: str, images: list[Path], downloads: Path) -> Callable[[int], None]:
    """Requests to the Open Inference Protocol v2 API: `complete` of the first bundle."""
    grids = [np.asarray(Image.open(p), np.float32) / 255.0 for p in images]
    with urllib.request.urlopen(f"{url}v2/models", timeout=30) as answer:
        names = json.load(answer)["models"]  # kserve lists the served models' names
    suffixes = (contract.STEP_MODEL_SUFFIX, contract.SAMPLE_MODEL_SUFFIX)
    model = next(n for n in names if not n.endswith(suffixes))
    image_in, rows_in = (s.name for s in contract.complete_inputs())

    def call(i: int) -> None:
        body = {
            "inputs": [
                {"name": image_in, "datatype": "FP32", "shape": [1, 28, 28],
                 "data": grids[i % len(grids)].ravel().tolist()},
                {"name": rows_in, "datatype": "INT64", "shape": [1], "data": [KNOWN_ROWS]},
            ]
        }  # fmt: skip
        request = urllib.request.Request(
            f"{url}v2/models/{model}/infer",
            json.dumps(body).encode(),
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            json.load(answer)

    return call


@dataclass(frozen=True)
class Target:
    name: str
    kind: str  # the server, as bench.servers.start knows it
    caller: Callable[[str, list[Path], Path], Callable[[int], None]]


TARGETS = {"app": Target("app", "gradio", app_caller), "api": Target("api", "v2", api_caller)}


def write_images(folder: Path, count: int = 64) -> None:
    """Distinct prompts: equal uploads would share one cached file and hide disk growth."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        image = (rng.random((28, 28)) * 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"prompt{i}.png")
