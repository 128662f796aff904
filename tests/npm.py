"""What the tests of the JavaScript parts need: Node.js, each folder's `npm ci` packages, and
Python onnxruntime's completion (and sampled completion) to compare with.

Missing pieces skip those tests with the command that installs them, unless
ROWGEN_REQUIRE_NODE=1 (set by .ci/run), where a skip would hide an untested feature: then fail.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from rowgen import contract, sessions
from rowgen.bundle import open_bundle
from rowgen.sampling import draw_noise
from rowgen.stepping import complete_by_steps

REQUIRE_ENV = "ROWGEN_REQUIRE_NODE"


def unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_ENV}=1 requires the Node.js and web tests")
    pytest.skip(reason)


def require_packages(folder: Path, package: str) -> Path:
    """`folder/node_modules/<package>`, or skip/fail saying to run `npm ci` there."""
    installed = folder / "node_modules" / package
    if not (installed / "package.json").is_file():
        unavailable(f"{package} is not installed: run `npm ci` in {folder}")
    return installed


def require_node() -> str:
    node = shutil.which("node")
    if node is None:
        unavailable("Node.js is not installed (apt-get install nodejs npm)")
    return node


def python_reference(folder: Path, image: np.ndarray, known_rows: int) -> tuple:
    """(complete.onnx, step.onnx driven row by row) on Python onnxruntime for one (28, 28) image."""
    bundle = open_bundle(folder)
    batch, known = image[None].astype(np.float32), np.array([known_rows], np.int64)
    done = sessions.open_session(bundle.file(contract.COMPLETE_ONNX))
    image_name, known_name = (s.name for s in contract.complete_inputs())
    complete = done.run(None, {image_name: batch, known_name: known})[0][0]
    step = sessions.open_session(bundle.file(contract.STEP_ONNX))
    names = [i.name for i in step.get_inputs()]

    def step_fn(*tensors: np.ndarray) -> list[np.ndarray]:
        return step.run(None, dict(zip(names, tensors, strict=True)))

    return complete, complete_by_steps(step_fn, bundle.config, batch, known)[0]


def python_sample(
    folder: Path, image: np.ndarray, known_rows: int, seed: int, temperature: float, sample: int = 0
) -> np.ndarray:
    """Sample `sample` of `seed` for one (28, 28) image: sample.onnx on Python onnxruntime, with
    the noise rowgen.sampling.draw_noise gives that sample."""
    bundle = open_bundle(folder)
    noise = draw_noise(seed, sample + 1, bundle.config.noise_dim)[sample : sample + 1]
    values = (
        image[None].astype(np.float32),
        np.array([known_rows], np.int64),
        noise,
        np.array([temperature], np.float32),
    )
    names = [s.name for s in contract.sample_inputs(bundle.config.noise_dim)]
    session = sessions.open_session(bundle.file(contract.SAMPLE_ONNX))
    return session.run(None, dict(zip(names, values, strict=True)))[0][0]
