"""Triton serving the python-backend repository (`make triton-serve`) on the tiny bundles.

One tritonserver for the module (the tiny sampling bundle: `<bundle>`, `<bundle>_step`,
`<bundle>_sample` and `<bundle>_sample_step`), driven through tritonclient HTTP and gRPC: answers
equal onnxruntime's on the bundle, step sequences interleaved and an ID reused, a sampled
sequence equal to sample.onnx, batching seen in Triton's statistics, bad requests answered 4xx,
a clean stop. Needs `.ci/get-tritonserver` and `make triton-env`: CI
(ROWGEN_REQUIRE_TRITONSERVER=1) fails without them, a developer's run skips. The slow test
serves every tiny bundle (window mode, two layers) and lets a sequence idle out.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

from bench.load import TRITON_PATHS  # noqa: E402
from bench.load import main as load_main  # noqa: E402
from export.triton.__main__ import main  # noqa: E402
from export.triton.env import env_problem  # noqa: E402
from export.triton.server import DEFAULT_ENV, Install, Running, start  # noqa: E402
from rowgen import contract  # noqa: E402
from rowgen.bundle import open_bundle  # noqa: E402
from rowgen.config import ModelConfig  # noqa: E402
from rowgen.sampling import draw_noise  # noqa: E402
from rowgen.stepping import zero_state  # noqa: E402
from serve.runtime import OrtModel  # noqa: E402
from tests.conftest import TINY_CONFIGS, TINY_HELD, TINY_SAMPLER  # noqa: E402

STEP = TINY_SAMPLER + contract.STEP_MODEL_SUFFIX
SAMPLE = TINY_SAMPLER + contract.SAMPLE_MODEL_SUFFIX
SAMPLE_STEP_SUFFIX = contract.SAMPLE_STEP_MODEL_SUFFIX
SAMPLE_STEP = TINY_SAMPLER + SAMPLE_STEP_SUFFIX
IMAGE, KNOWN_ROWS = (s.name for s in contract.complete_inputs())
COMPLETED = contract.complete_outputs()[0].name


def _require_triton() -> Install:
    install = Install.default()
    found = [p for p in (install.problem(), env_problem(DEFAULT_ENV)) if p]
    if found:
        if os.environ.get("ROWGEN_REQUIRE_TRITONSERVER"):
            pytest.fail("; ".join(found))
        pytest.skip("; ".join(found))
    return install


def serve(artifacts: Path, root: Path, *flags: str) -> Running:
    """`make triton` then `make triton-serve` for `artifacts`, on free loopback ports."""
    _require_triton()
    out = root / "triton"
    assert main(["--artifacts", str(artifacts), "--out", str(out), *flags]) == 0
    return start(root / "triton-python", root / "tritonserver.log")


@pytest.fixture(scope="module")
def server(tiny_sampler_bundles: Path, tmp_path_factory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("triton")
    running = serve(tiny_sampler_bundles, root, TINY_SAMPLER, TINY_HELD)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def model(tiny_sampler_bundles: Path) -> OrtModel:
    return OrtModel(tiny_sampler_bundles / TINY_SAMPLER, "cpu")


def images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.random((n, contract.IMAGE_SIZE, contract.IMAGE_SIZE), dtype=np.float32)
    known_rows = rng.integers(contract.KNOWN_ROWS_MIN, contract.KNOWN_ROWS_MAX + 1, n)
    return image, known_rows.astype(np.int64)


def tensors(module, arrays: dict[str, np.ndarray], binary: bool = True) -> list:
    """InferInputs of tritonclient's `module`; a per-image scalar goes as [B, 1] (Triton's way)."""
    inputs = []
    for name, array in arrays.items():
        array = array[:, None] if array.ndim == 1 else array
        datatype = "INT64" if array.dtype == np.int64 else "FP32"
        tensor = module.InferInput(name, list(array.shape), datatype)
        if module is httpclient:
            tensor.set_data_from_numpy(array, binary_data=binary)
        else:
            tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def client(module, server: Running):
    return module.InferenceServerClient(server.url if module is httpclient else server.grpc_url)


def test_http_and_grpc_answer_like_onnxruntime(server: Running, model: OrtModel) -> None:
    image, known_rows = images(5)
    expected = model.complete(image, known_rows)
    arrays = {IMAGE: image, KNOWN_ROWS: known_rows}
    for module, binary in ((httpclient, False), (httpclient, True), (grpcclient, True)):
        got = client(module, server).infer(TINY_SAMPLER, tensors(module, arrays, binary))
        diff = float(np.abs(got.as_numpy(COMPLETED) - expected).max())
        assert diff <= 1e-6, f"{module.__name__} binary={binary}: completed differs by {diff:.3g}"
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((5, contract.SAMPLE_STEPS, model.config.noise_dim), np.float32)
    temperature = np.array([0, 0.5, 1, 1.5, 2], np.float32)
    names = [s.name for s in contract.sample_inputs(model.config.noise_dim)]
    arrays = dict(zip(names, (image, known_rows, noise, temperature), strict=True))
    got = client(grpcclient, server).infer(SAMPLE, tensors(grpcclient, arrays))
    diff = float(np.abs(got.as_numpy(COMPLETED) - model.sample(*arrays.values())).max())
    assert diff <= 1e-6, f"{SAMPLE}: completed differs by {diff:.3g}"


def drive(
    server: Running,
    module,
    config,
    step: str,
    sequence,
    image,
    known_rows,
    barrier=None,
    extra=None,
):
    """One image completed through a step model, row by row: its known rows, then predictions;
    `extra(t)`: the other tensors of the request that sends row t (a sample step's noise)."""
    row_in = contract.step_inputs(config)[0].name
    row_out = contract.step_outputs(config)[0].name
    conn = client(module, server)
    rows = [image[:1]]
    for t in range(contract.IMAGE_SIZE - 1):
        if barrier is not None:
            barrier.wait()  # every sequence sends row t before any sends row t + 1
        answer = conn.infer(
            step,
            tensors(module, {row_in: rows[-1], **(extra(t) if extra else {})}),
            sequence_id=sequence,
            sequence_start=t == 0,
            sequence_end=t == contract.IMAGE_SIZE - 2,
        )
        rows.append(image[t + 1 : t + 2] if t + 1 < known_rows else answer.as_numpy(row_out))
    return np.concatenate(rows)


def test_step_sequences_interleaved_and_reused_equal_complete(
    server: Running, model: OrtModel
) -> None:
    image, known_rows = images(5, seed=2)
    expected = model.complete(image, known_rows)
    sequences = [(1, httpclient), (2, grpcclient), ("three", httpclient), (4, grpcclient)]
    barrier = threading.Barrier(len(sequences))

    def run(i: int) -> np.ndarray:
        sequence, module = sequences[i]
        args = (sequence, image[i], known_rows[i], barrier)
        return drive(server, module, model.config, STEP, *args)

    with ThreadPoolExecutor(len(sequences)) as pool:
        got = list(pool.map(run, range(len(sequences))))
    got.append(drive(server, grpcclient, model.config, STEP, 1, image[4], known_rows[4]))  # reused
    for i, completed in enumerate(got):
        diff = float(np.abs(completed - expected[i]).max())
        assert diff <= contract.STEP_TOLERANCE, f"sequence {i}: completion differs by {diff:.3g}"


@pytest.mark.parametrize("bundle", [TINY_SAMPLER, TINY_HELD])
def test_a_sample_step_sequence_equals_sample_onnx(
    server: Running, tiny_sampler_bundles: Path, bundle: str
) -> None:
    """`<bundle>_sample_step` through the python backend: row, noise_row and temperature (and a
    held class's row_known) per request, h and c (and kind) kept by the model per sequence;
    equal to one sample.onnx call."""
    model = OrtModel(tiny_sampler_bundles / bundle, "cpu")
    name = bundle + contract.SAMPLE_STEP_MODEL_SUFFIX
    image, known_rows = images(2, seed=6)
    noise = draw_noise(9, 2, model.config.noise_dim)
    temperature = np.array([1.0, 0.5], np.float32)
    expected = model.sample(image, known_rows, noise, temperature)
    *_, noise_in, temperature_in = (s.name for s in contract.sample_step_inputs(model.config))
    for i, module in enumerate((httpclient, grpcclient)):

        def extra(t: int, i: int = i) -> dict[str, np.ndarray]:
            known = {contract.ROW_KNOWN: np.float32([t < known_rows[i]])}
            return {
                noise_in: noise[i, t][None],
                temperature_in: temperature[i : i + 1],
                **(known if model.config.holds_kind else {}),
            }

        got = drive(
            server, module, model.config, name, 30 + i, image[i], known_rows[i], extra=extra
        )
        diff = float(np.abs(got - expected[i]).max())
        print(f"{name} through Triton ({module.__name__}) vs sample.onnx: {diff:.2e}")
        assert diff <= contract.COMPLETE_TOLERANCE, f"{module.__name__}: differs by {diff:.3g}"


def _counts(server: Running, name: str) -> tuple[int, int, int]:
    """(inferences, executions, largest batch) from Triton's statistics extension."""
    (stats,) = client(httpclient, server).get_inference_statistics(name)["model_stats"]
    largest = max((b["batch_size"] for b in stats["batch_stats"]), default=0)
    return stats["inference_count"], stats["execution_count"], largest


def test_concurrent_requests_are_batched(server: Running, model: OrtModel) -> None:
    image, known_rows = images(32, seed=3)
    expected = model.complete(image, known_rows)
    before = _counts(server, TINY_SAMPLER)

    def call(i: int) -> np.ndarray:
        arrays = {IMAGE: image[i : i + 1], KNOWN_ROWS: known_rows[i : i + 1]}
        answer = client(grpcclient, server).infer(TINY_SAMPLER, tensors(grpcclient, arrays))
        return answer.as_numpy(COMPLETED)[0]

    with ThreadPoolExecutor(16) as pool:
        got = np.stack(list(pool.map(call, range(32))))
    assert float(np.abs(got - expected).max()) <= 1e-6
    # Triton's statistics can lag its answers: on a loaded machine all 32 answers were back while
    # the count stood at 24. Wait for the count, a few seconds at most.
    deadline = time.monotonic() + 10
    while (counts := _counts(server, TINY_SAMPLER))[0] - before[0] < 32:
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    inferences, executions, largest = counts
    assert inferences - before[0] == 32
    assert executions - before[1] < 32 and largest > 1, (before, inferences, executions, largest)


def post(server: Running, model: str, body: dict) -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://{server.url}/v2/models/{model}/infer", json.dumps(body).encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _body(known_rows: list, pixel: float = 0.5, shape: list | None = None) -> dict:
    n = len(known_rows)
    return {
        "inputs": [
            {"name": IMAGE, "datatype": "FP32", "shape": [n, 28, 28], "data": [pixel] * 784 * n},
            {"name": KNOWN_ROWS, "datatype": "INT64", "shape": shape or [n, 1], "data": known_rows},
        ]
    }


def _sample_step_body(
    noise: float = 0.0, temperature: float = 1.0, row_known: float | None = None
) -> dict:
    """The first request of a `<bundle>_sample_step` sequence, as JSON: the tiny cvae sampler's,
    or with `row_known` the tiny held-class flow head's (its noise_row 28 wide)."""
    config = ModelConfig("lstm", "stream", 8, 1, "cvae", 4)  # the tiny sampler's
    row, *_, noise_row, temp = contract.sample_step_inputs(config)
    width = config.noise_dim if row_known is None else 28
    values = {row: [0.5] * 28, noise_row: [noise] * width, temp: [temperature]}
    if row_known is not None:
        values[contract.TensorSpec(contract.ROW_KNOWN, "float32", ())] = [row_known]
    inputs = [
        {"name": s.name, "datatype": "FP32", "shape": [1, len(v)], "data": v}
        for s, v in values.items()
    ]
    return {"inputs": inputs, "parameters": {"sequence_id": 78, "sequence_start": True}}


def test_bad_requests_get_4xx_and_spare_their_batch(server: Running) -> None:
    row = contract.step_inputs(ModelConfig())[0].name
    step = {"inputs": [{"name": row, "datatype": "FP32", "shape": [1, 28], "data": [0.0] * 28}]}
    cases = {
        "known_rows": (TINY_SAMPLER, _body([99])),
        "image": (TINY_SAMPLER, _body([14], pixel=2.0)),
        "unexpected shape": (TINY_SAMPLER, _body([14], shape=[1])),
        "not found": ("nope", _body([14])),
        "correlation ID": (STEP, step),
        "START": (STEP, {**step, "parameters": {"sequence_id": 77}}),
        "'noise_row'": (SAMPLE_STEP, _sample_step_body(noise=11.0)),
        "'temperature'": (SAMPLE_STEP, _sample_step_body(temperature=2.5)),
        "'row_known'": (TINY_HELD + SAMPLE_STEP_SUFFIX, _sample_step_body(row_known=0.5)),
    }
    for needle, (name, body) in cases.items():
        code, answer = post(server, name, body)
        assert 400 <= code < 500 and needle in answer, (needle, code, answer)
    nan = np.full((1, 28, 28), np.nan, np.float32)
    with pytest.raises(InferenceServerException, match="NaN") as refused:
        arrays = {IMAGE: nan, KNOWN_ROWS: np.array([14])}
        client(grpcclient, server).infer(TINY_SAMPLER, tensors(grpcclient, arrays))
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    # A bad request among good ones: only it fails, whichever batch it shares.
    bodies = [_body([14]) for _ in range(7)] + [_body([0])]
    with ThreadPoolExecutor(8) as pool:
        codes = [code for code, _ in pool.map(lambda b: post(server, TINY_SAMPLER, b), bodies)]
    assert codes == [200] * 7 + [400]
    # A refused START leaves nothing to continue from, not the ID's earlier state.
    conn = client(httpclient, server)
    good, bad = (tensors(httpclient, {row: np.full((1, 28), v, np.float32)}) for v in (0.5, 2.0))
    conn.infer(STEP, good, sequence_id=55, sequence_start=True)
    with pytest.raises(InferenceServerException, match="pixels"):
        conn.infer(STEP, bad, sequence_id=55, sequence_start=True)
    with pytest.raises(InferenceServerException, match="no state here"):
        conn.infer(STEP, good, sequence_id=55)
    conn.close()


def test_the_server_stops_cleanly(server: Running) -> None:
    """SIGTERM: Triton unloads every model, its python stubs end, and it exits 0."""
    repository = str(server.repository)
    assert server.stop() == 0
    log = server.log.read_text()
    for name in (TINY_SAMPLER, STEP, SAMPLE, SAMPLE_STEP):
        assert f"successfully unloaded '{name}'" in log, log[-2000:]
    stubs = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if repository.encode() in cmdline.read_bytes():
                stubs.append(cmdline.parent.name)
        except OSError:
            continue
    assert not stubs, f"processes still running on {repository}: {stubs}"


def _model_module():
    """export/triton/model.py, importable here with Triton's own triton_python_backend_utils."""
    install = _require_triton()
    utils = install.backends / "python" / "triton_python_backend_utils.py"
    spec = importlib.util.spec_from_file_location("triton_python_backend_utils", utils)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules.setdefault("triton_python_backend_utils", module)
    from export.triton import model

    return model


def test_sequences_start_end_and_idle_out() -> None:
    model = _model_module()
    config = ModelConfig("lstm", "stream", hidden=8)
    held = model.Sequences(lambda batch: zero_state(config, batch), idle_s=5)
    with pytest.raises(model.SequenceError, match="sequence_start"):
        held.state(7, start=False, batch=1)
    first = held.state(7, start=True, batch=1)
    assert all(not s.any() for s in first)
    later = [s + 1 for s in first]
    held.update(7, later, end=False, now=100.0)
    held.update("b", later, end=False, now=103.0)
    assert held.state(7, start=False, batch=1) is later
    with pytest.raises(model.SequenceError, match="one batch size"):
        held.state(7, start=False, batch=2)
    assert all(not s.any() for s in held.state(7, start=True, batch=1))  # START resets
    held.expire(now=106.0, keep={7})  # 7 is in the batch being served: kept
    assert len(held) == 2
    held.expire(now=106.0, keep=set())
    assert len(held) == 1  # 7 idled out, "b" has not
    held.update("b", later, end=True, now=107.0)
    assert len(held) == 0


@pytest.mark.slow
def test_every_tiny_bundle_steps_like_it_completes(tiny_bundles: Path, tmp_path: Path) -> None:
    """Window mode, two-layer RNN, GRU and LSTM through Triton; a sequence left idle is freed."""
    running = serve(tiny_bundles, tmp_path, "--sequence-idle-us", "1000000")
    try:
        image, known_rows = images(len(TINY_CONFIGS), seed=4)
        for i, name in enumerate(TINY_CONFIGS):
            expected = OrtModel(tiny_bundles / name, "cpu").complete(image, known_rows)[i]
            step = name + contract.STEP_MODEL_SUFFIX
            config = open_bundle(tiny_bundles / name).config
            for sequence, module in enumerate((httpclient, grpcclient), start=1):
                got = drive(running, module, config, step, sequence, image[i], known_rows[i])
                diff = float(np.abs(got - expected).max())
                assert diff <= contract.STEP_TOLERANCE, f"{step}: differs by {diff:.3g}"
        conn = client(httpclient, running)
        row_in = contract.step_inputs(open_bundle(tiny_bundles / "gru").config)[0].name
        row = tensors(httpclient, {row_in: image[0, :1]})
        conn.infer("gru_step", row, sequence_id=9, sequence_start=True)
        time.sleep(2.5)  # over the 1 s idle timeout: Triton and the model free the sequence
        with pytest.raises(InferenceServerException, match="START"):
            conn.infer("gru_step", row, sequence_id=9)
        conn.close()  # Triton's shutdown waits for open HTTP connections
    finally:
        assert running.stop() == 0


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("wrk") is None, reason="bench.load drives REST with Debian's wrk")
def test_load_measures_triton_beside_the_api(tiny_bundles: Path, tmp_path: Path) -> None:
    """`make load`'s Triton rows (JSON, binary tensors, gRPC) in the same run as the v2 API's."""
    _require_triton()
    paths = ["rest-json", *TRITON_PATHS]
    argv = ["--artifacts", str(tiny_bundles), "--model", "gru", "--out", str(tmp_path)]
    argv += ["--paths", *paths, "--clients", "2", "--images", "1", "3", "--seconds", "1"]
    assert load_main([*argv, "--headline-seconds", "1", "--no-tuning"]) == 0
    result = json.loads((tmp_path / "load.json").read_text())
    cells = {(c["path"], c["images_per_request"]): c for c in result["cells"]}
    assert set(cells) == {(p, n) for p in paths for n in (1, 3)}
    for key, cell in cells.items():
        assert cell["requests_ok"] >= 1 and cell["errors"] == 0, (key, cell)
        assert cell["mean_batch"] >= 1, (key, cell)
    assert all(s["rss_mib_after"] > 0 for s in result["servers"].values())
    assert "triton_vs_rest_json_8_clients" not in result["targets"]  # 2 clients here, not 8
