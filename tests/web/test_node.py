"""The Node.js examples (examples/node/) against Python onnxruntime on the same PNGs.

`complete.mjs` (one call of complete.onnx) must match within 1e-6 and `step.mjs` (step.onnx
driven row by row with explicit state) within the step tolerance, on tiny bundles of every cell
and mode and on the shipped LSTM. Skipped without Node.js or `npm ci` in examples/node, unless
ROWGEN_REQUIRE_NODE=1 (CI), where that fails instead.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rowgen import contract
from rowgen.pictures import to_uint8
from serve.app.gallery import load_gallery
from tests import npm

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "node"
COMPLETE_TOLERANCE = 1e-6  # same kernels, same file: only float summation order may differ
BUNDLES = {  # name -> folder under tiny_bundles, or the shipped bundle
    "lstm": None,
    "gru": None,
    "rnn": None,
    "lstm-window": None,
    "shipped lstm": REPO / "artifacts" / "lstm",
}


@pytest.fixture(scope="module")
def node() -> str:
    found = npm.require_node()
    npm.require_packages(EXAMPLES, "onnxruntime-node")
    npm.require_packages(EXAMPLES, "pngjs")
    return found


def run_example(node: str, script: str, *args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [node, script, *map(str, args)],
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=120,
    )


def png_of(sample: int, folder: Path) -> tuple[Path, np.ndarray]:
    """A test image as the 8-bit grey PNG a user would have, and its exact float pixels."""
    pixels = to_uint8(load_gallery()[sample].image)
    path = folder / f"sample{sample}.png"
    Image.fromarray(pixels).save(path)
    return path, pixels.astype(np.float32) / 255.0


def test_missing_node_fails_only_when_required(monkeypatch) -> None:
    monkeypatch.setenv(npm.REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="requires the Node"):
        npm.unavailable("no node")
    monkeypatch.delenv(npm.REQUIRE_ENV)
    with pytest.raises(pytest.skip.Exception, match="no node"):
        npm.unavailable("no node")


@pytest.mark.parametrize(
    ("name", "sample", "known_rows"),
    [
        ("lstm", 0, 7),
        ("gru", 5, 14),
        ("rnn", 9, 21),
        ("lstm-window", 13, 10),
        ("shipped lstm", 18, 14),
        ("shipped lstm", 4, 1),
    ],
)
def test_examples_equal_python_onnxruntime(
    node: str, tiny_bundles: Path, tmp_path: Path, name: str, sample: int, known_rows: int
) -> None:
    folder = BUNDLES[name] or tiny_bundles / name
    png, image = png_of(sample, tmp_path)
    complete, stepped = npm.python_reference(folder, image, known_rows)
    n = contract.IMAGE_SIZE
    for script, tolerance in (
        ("complete.mjs", COMPLETE_TOLERANCE),
        ("step.mjs", contract.STEP_TOLERANCE),
    ):
        out = tmp_path / f"{script}.json"
        done = run_example(
            node,
            script,
            folder,
            png,
            "--known-rows",
            known_rows,
            "--json",
            out,
            "--out",
            tmp_path / f"{script}.png",
        )
        assert done.returncode == 0, done.stderr
        assert f"rows {known_rows}-27 generated" in done.stdout
        got = np.array(json.loads(out.read_text())["completed"], np.float32).reshape(n, n)
        assert np.array_equal(got[:known_rows], image[:known_rows]), f"{script}: known rows changed"
        for label, want in (("complete.onnx", complete), ("step.onnx by steps", stepped)):
            gap = float(np.abs(got - want).max())
            assert gap <= tolerance, (
                f"{script} vs Python {label} on {name}: {gap:.2e} > {tolerance}"
            )
        written = np.asarray(Image.open(tmp_path / f"{script}.png").convert("L"))
        assert np.array_equal(written, to_uint8(got)), f"{script}: --out PNG differs from --json"


def test_bad_inputs_get_one_line_and_exit_2(node: str, tmp_path: Path) -> None:
    folder = tmp_path / "lstm"
    shutil.copytree(REPO / "artifacts" / "lstm", folder)
    not_png = tmp_path / "shoe.png"
    not_png.write_text("not a picture")
    big = tmp_path / "big.png"
    Image.new("L", (56, 28)).save(big)
    good, _ = png_of(0, tmp_path)
    cases = [
        (("step.mjs", folder, not_png), "shoe.png is not a PNG this example can read"),
        (("complete.mjs", folder, big), "big.png is 56x28; these examples take 28x28 PNGs"),
        (("complete.mjs", tmp_path, good), "is not a rowgen bundle"),
        (("complete.mjs", folder, good, "--known-rows", "x"), "--known-rows must be an integer"),
        (("complete.mjs", folder), "usage: node complete.mjs"),
    ]
    for args, message in cases:
        done = run_example(node, *args)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
    with open(folder / contract.STEP_ONNX, "r+b") as f:  # one byte altered
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 1]))
    done = run_example(node, "step.mjs", folder, good)
    assert done.returncode == 2 and "does not match its sha256" in done.stderr, done.stderr
