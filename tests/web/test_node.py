"""The Node.js examples (examples/node/) against Python onnxruntime on the same PNGs.

`complete.mjs` (one call of complete.onnx) must match within 1e-6 and `step.mjs` (step.onnx
driven row by row with explicit state) within the step tolerance, on tiny bundles of every cell
and mode and on the shipped LSTM; `sample.mjs` (sample_step.onnx row by row, noise from a seed)
must match Python's sample.onnx on draw_noise's noise within the step tolerance, and the noise
generator it shares with the web page (web/sampling.js) must give draw_noise's float32 values
bit for bit. Skipped without Node.js or `npm ci` in examples/node, unless ROWGEN_REQUIRE_NODE=1
(CI), where that fails instead.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rowgen import contract, sampling
from rowgen.pictures import to_uint8
from rowgen.sampling import draw_noise
from serve.app.gallery import load_gallery
from tests import npm
from tests.conftest import TINY_SAMPLER

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


@pytest.mark.parametrize(
    ("name", "item", "known_rows", "seed", "temperature", "sample"),
    [
        ("shipped lstm", 4, 14, 5, 1.0, 0),
        ("shipped lstm", 18, 7, 2**63 - 1, 0.5, 2),
        (TINY_SAMPLER, 9, 20, 0, 2.0, 0),  # a cvae head, noise_dim 4
    ],
)
def test_sample_equals_python_sample_onnx(
    node: str,
    tiny_sampler_bundles: Path,
    tmp_path: Path,
    name: str,
    item: int,
    known_rows: int,
    seed: int,
    temperature: float,
    sample: int,
) -> None:
    folder = BUNDLES.get(name) or tiny_sampler_bundles / name
    png, image = png_of(item, tmp_path)
    out = tmp_path / "sample.json"
    args = ["--known-rows", known_rows, "--seed", seed, "--temperature", temperature]
    args += ["--sample", sample, "--json", out, "--out", tmp_path / "sample.png"]
    done = run_example(node, "sample.mjs", folder, png, *args)
    assert done.returncode == 0, done.stderr
    assert f"rows {known_rows}-27 generated by 27 calls of sample_step.onnx" in done.stdout
    result = json.loads(out.read_text())
    assert (result["seed"], result["sample"], result["noise"]) == (
        str(seed),
        sample,
        "rowgen-normal/1",
    )
    n = contract.IMAGE_SIZE
    got = np.array(result["completed"], np.float32).reshape(n, n)
    assert np.array_equal(got[:known_rows], image[:known_rows]), "sample.mjs: known rows changed"
    want = npm.python_sample(folder, image, known_rows, seed, temperature, sample)
    gap = float(np.abs(got - want).max())
    print(f"node sample.mjs vs Python sample.onnx ({name}, seed {seed}): {gap:.2e}")
    assert gap <= contract.STEP_TOLERANCE, f"sample.mjs vs Python sample.onnx on {name}: {gap:.2e}"
    mean = npm.python_reference(folder, image, known_rows)[0]
    assert np.abs(got - mean).max() > 1e-3, "sample.mjs gave the mean"
    written = np.asarray(Image.open(tmp_path / "sample.png").convert("L"))
    assert np.array_equal(written, to_uint8(got)), "sample.mjs: --out PNG differs from --json"


NOISE_SCRIPT = """
import { drawNoise, MAX_SEED, MAX_TEMPERATURE, NOISE_ALGORITHM } from "../../web/sampling.js";
const [seed, samples, dim] = process.argv.slice(1);
if (seed === "constants") {
  console.log(JSON.stringify({ MAX_SEED: String(MAX_SEED), MAX_TEMPERATURE, NOISE_ALGORITHM }));
} else {
  process.stdout.write(Buffer.from(drawNoise(seed, Number(samples), 27, Number(dim)).buffer));
}
"""


def test_the_shared_noise_is_pythons_bit_for_bit(node: str) -> None:
    """web/sampling.js (which sample.mjs and the page import) against draw_noise: 5 seeds of
    8 samples x 27 x 1000 values each, every float32 equal, and the same limits."""
    for seed in (0, 1, 2**32 + 7, 2**63 - 1, 2**64 - 1):
        done = subprocess.run(
            [node, "--input-type=module", "-e", NOISE_SCRIPT, str(seed), "8", "1000"],
            cwd=EXAMPLES, capture_output=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        got = np.frombuffer(done.stdout, np.float32)
        want = draw_noise(seed, 8, 1000).ravel()
        differ = int((got.view(np.uint32) != want.view(np.uint32)).sum())
        assert got.shape == want.shape and differ == 0, f"seed {seed}: {differ} values differ"
    done = subprocess.run(
        [node, "--input-type=module", "-e", NOISE_SCRIPT, "constants"],
        cwd=EXAMPLES, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert json.loads(done.stdout) == {
        "MAX_SEED": str(sampling.MAX_SEED),
        "MAX_TEMPERATURE": sampling.MAX_TEMPERATURE,
        "NOISE_ALGORITHM": sampling.NOISE_ALGORITHM,
    }


def test_bad_sample_inputs_get_one_line_and_exit_2(
    node: str, tiny_bundles: Path, tmp_path: Path
) -> None:
    good, _ = png_of(0, tmp_path)
    shipped = BUNDLES["shipped lstm"]
    cases = [
        (
            (tiny_bundles / "gru", good),
            "gives only the mean (its manifest lists no sample_step.onnx)",
        ),
        (
            (shipped, good, "--seed=-1"),
            "--seed must be a whole number from 0 to 9223372036854775807",
        ),
        ((shipped, good, "--seed", "2" + "0" * 19), "--seed must be a whole number"),
        ((shipped, good, "--temperature", "3"), "--temperature must be a number from 0 to 2"),
        ((shipped, good, "--temperature", "warm"), "--temperature must be a number"),
        ((shipped, good, "--sample", "1.5"), "--sample must be a whole number"),
        ((shipped, good, "--sample", "99999999"), "--sample 99999999 is past the end"),
        ((shipped, good, "--sead", "4"), "Unknown option '--sead'"),
    ]
    for args, message in cases:
        done = run_example(node, "sample.mjs", *args)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
        assert done.stderr.startswith("error: ") and "    at " not in done.stderr, done.stderr
