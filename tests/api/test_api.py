"""The v2 API (`python -m serve.api`) on the tiny bundles: metadata, inference through tritonclient
HTTP and gRPC against in-process onnxruntime, batching under concurrency, every bad request's
answer, overload, and the loopback-only default. The micro-batcher is also tested on its own."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

# The server runs in its own process: kserve's and tritonclient's gRPC modules register the same
# protobuf names and cannot be imported into one process.
if importlib.util.find_spec("kserve") is None:
    pytest.skip("the v2 API needs the api extra: pip install '.[api]'", allow_module_level=True)
httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException  # noqa: E402

from bench.load_clients import v2_inputs  # noqa: E402
from bench.servers import Running  # noqa: E402
from rowgen import contract  # noqa: E402
from serve.batching import BatchSettings, MicroBatcher, QueueFull  # noqa: E402
from serve.runtime import OrtModel  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def lstm(tiny_bundles: Path) -> OrtModel:
    return OrtModel(tiny_bundles / "lstm", "cpu")


def images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.random((n, contract.IMAGE_SIZE, contract.IMAGE_SIZE), dtype=np.float32)
    known_rows = rng.integers(contract.KNOWN_ROWS_MIN, contract.KNOWN_ROWS_MAX + 1, n)
    return image, known_rows.astype(np.int64)


def infer(client_module, url: str, image: np.ndarray, known_rows: np.ndarray, binary_data=True):
    client = client_module.InferenceServerClient(url)
    return client.infer("lstm", v2_inputs(client_module, image, known_rows, binary_data))


def post(server: Running, path: str, body: bytes, headers: dict | None = None):
    """(status, JSON answer, headers) of a raw POST: bad requests tritonclient would not send."""
    request = urllib.request.Request(
        f"http://{server.url}{path}", data=body, headers=headers or {}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers


def json_body(image: np.ndarray, known_rows: np.ndarray, **change) -> dict:
    inputs = {
        "image": {"name": "image", "datatype": "FP32", "shape": list(image.shape)},
        "known_rows": {"name": "known_rows", "datatype": "INT64", "shape": [len(known_rows)]},
    }
    inputs["image"]["data"] = [None if np.isnan(v) else float(v) for v in image.ravel()]
    inputs["known_rows"]["data"] = known_rows.tolist()
    for key, value in change.items():
        name, field = key.split("__")
        if value is None:
            del inputs[name][field]
        else:
            inputs[name][field] = value
    return {"inputs": list(inputs.values())}


def test_health_and_metadata_follow_the_contract(server: Running, tiny_bundles: Path) -> None:
    for module, url in ((httpclient, server.url), (grpcclient, server.grpc_url)):
        client = module.InferenceServerClient(url)
        assert client.is_server_live() and client.is_server_ready()
        for name in ("lstm", "lstm_step", "gru", "gru_step", "lstm-window_step"):
            assert client.is_model_ready(name), name
    meta = httpclient.InferenceServerClient(server.url).get_model_metadata("lstm")
    assert meta["inputs"] == [
        {"name": "image", "datatype": "FP32", "shape": [-1, 28, 28]},
        {"name": "known_rows", "datatype": "INT64", "shape": [-1]},
    ]
    assert meta["outputs"] == [{"name": "completed", "datatype": "FP32", "shape": [-1, 28, 28]}]
    step = grpcclient.InferenceServerClient(server.grpc_url).get_model_metadata("lstm_step")
    assert [(t.name, t.datatype, list(t.shape)) for t in step.inputs] == [
        ("row", "FP32", [-1, 28]),
        ("h", "FP32", [-1, 1, 8]),
        ("c", "FP32", [-1, 1, 8]),
    ]
    assert [t.name for t in step.outputs] == ["next_row", "h_out", "c_out"]


@pytest.mark.parametrize("transport", ["http-json", "http-binary", "grpc"])
def test_infer_equals_onnxruntime(server: Running, lstm: OrtModel, transport: str) -> None:
    image, known_rows = images(3)  # one request carrying a batch with mixed prompt lengths
    if transport == "grpc":
        result = infer(grpcclient, server.grpc_url, image, known_rows)
    else:
        binary = transport == "http-binary"
        result = infer(httpclient, server.url, image, known_rows, binary_data=binary)
    np.testing.assert_allclose(
        result.as_numpy("completed"), lstm.complete(image, known_rows), atol=1e-6
    )


def test_known_rows_as_a_column_as_triton_takes_it(server: Running, lstm: OrtModel) -> None:
    """[B, 1] known_rows (a Triton batching model's form) works; another 2-D shape is refused."""
    image, known_rows = images(3, seed=2)
    body = json_body(image, known_rows, known_rows__shape=[3, 1])
    code, answer, _ = post(server, "/v2/models/lstm/infer", json.dumps(body).encode())
    assert code == 200, answer
    completed = np.asarray(answer["outputs"][0]["data"], np.float32).reshape(image.shape)
    np.testing.assert_allclose(completed, lstm.complete(image, known_rows), atol=1e-6)
    body = json_body(image, known_rows, known_rows__shape=[1, 3])
    code, answer, _ = post(server, "/v2/models/lstm/infer", json.dumps(body).encode())
    assert code == 400 and "[-1, 1]" in json.dumps(answer), answer


def test_step_model_is_stateless_on_the_server(server: Running, lstm: OrtModel) -> None:
    """Driving `lstm_step` row by row over gRPC, the client carrying h/c, reproduces complete."""
    image, _ = images(2, seed=1)
    k = 10
    client = grpcclient.InferenceServerClient(server.grpc_url)
    specs = contract.step_inputs(lstm.config)
    state = [np.zeros((2, 1, 8), np.float32) for _ in specs[1:]]
    row, rows = image[:, 0], [image[:, 0]]
    for t in range(contract.IMAGE_SIZE - 1):
        inputs = []
        for spec, value in zip(specs, [row, *state], strict=True):
            inputs.append(grpcclient.InferInput(spec.name, list(value.shape), "FP32"))
            inputs[-1].set_data_from_numpy(value)
        result = client.infer("lstm_step", inputs)
        next_row = result.as_numpy("next_row")
        state = [result.as_numpy(s.name) for s in contract.step_outputs(lstm.config)[1:]]
        row = image[:, t + 1] if t + 1 < k else next_row
        rows.append(row)
    expected = lstm.complete(image, np.full(2, k))
    np.testing.assert_allclose(np.stack(rows, axis=1), expected, atol=1e-5)


def test_batching_returns_each_caller_its_own_rows(server: Running, lstm: OrtModel) -> None:
    image, known_rows = images(24, seed=2)
    expected = lstm.complete(image, known_rows)

    def call(i: int):
        module, url = (httpclient, server.url) if i % 2 else (grpcclient, server.grpc_url)
        result = infer(module, url, image[i : i + 1], known_rows[i : i + 1])
        params = result.get_response()
        params = params["parameters"] if isinstance(params, dict) else params.parameters
        batch = params["batch_images"]
        return result.as_numpy("completed"), getattr(batch, "int64_param", batch)

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(call, range(24)))
    for i, (completed, _) in enumerate(answers):
        np.testing.assert_allclose(completed[0], expected[i], atol=1e-6, err_msg=f"caller {i}")
    assert max(batch for _, batch in answers) > 1, "no two concurrent requests shared a call"
    metrics = urllib.request.urlopen(f"http://{server.url}/metrics").read().decode()
    assert 'rowgen_batch_images_count{model_name="lstm"}' in metrics


BAD_REQUESTS = {  # name -> (model, body changes, status, words the message must hold)
    "unknown model": ("nope", {}, 404, ["nope"]),
    "wrong input name": ("lstm", {"image__name": "picture"}, 400, ["'picture'", "image"]),
    "wrong datatype": ("lstm", {"known_rows__datatype": "FP32"}, 400, ["known_rows", "INT64"]),
    "wrong shape": ("lstm", {"image__shape": [1, 784]}, 400, ["image", "[-1, 28, 28]"]),
    "data not filling shape": ("lstm", {"image__shape": [2, 28, 28]}, 400, ["image", "shape"]),
    "missing input": ("lstm", {"known_rows__name": None}, 400, ["known_rows"]),
    "known_rows out of range": ("lstm", {"known_rows__data": [28]}, 400, ["known_rows", "1..27"]),
    "pixels out of range": ("lstm", {"image__data": [255.0] * 784}, 400, ["[0, 1]"]),
    "step without state": ("lstm_step", {}, 400, ["row (FP32", "h (FP32"]),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_json_request_is_answered(server: Running, case: str) -> None:
    model, change, status, words = BAD_REQUESTS[case]
    image, known_rows = images(1)
    body = json_body(image, known_rows, **change)
    if "known_rows__name" in change:
        body["inputs"] = body["inputs"][:1]
    code, answer, _ = post(server, f"/v2/models/{model}/infer", json.dumps(body).encode())
    assert code == status, answer
    message = json.dumps(answer)
    for word in words:
        assert word in message, (word, message)


def test_nan_image_is_refused(server: Running) -> None:
    image, known_rows = images(1)
    image[0, 3, 5] = np.nan
    try:
        infer(httpclient, server.url, image, known_rows)
    except InferenceServerException as exc:
        assert exc.status() == "400" and "NaN" in exc.message()
    else:
        pytest.fail("a NaN image was answered")


def test_curl_json_answer_is_plain_json_with_exact_floats(server: Running) -> None:
    """What `curl -H 'Content-Type: application/json'` gets: JSON (serve.api.rest's orjson
    codec) whose numbers read back as exactly the float32s of the binary answer."""
    image, known_rows = images(3, seed=4)
    body = json.dumps(json_body(image, known_rows)).encode()
    code, answer, headers = post(
        server, "/v2/models/lstm/infer", body, {"Content-Type": "application/json"}
    )
    assert code == 200 and headers["Content-Type"] == "application/json", answer
    (output,) = answer["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == (
        "completed",
        "FP32",
        [3, 28, 28],
    )
    assert "binary_data_size" not in json.dumps(answer)  # no size of bytes it does not send
    assert answer["model_name"] == "lstm" and answer["parameters"]["batch_images"] >= 3
    got = np.asarray(output["data"], dtype=np.float32).reshape(output["shape"])
    binary = infer(httpclient, server.url, image, known_rows, binary_data=True)
    np.testing.assert_array_equal(got, binary.as_numpy("completed"))


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", ["malformed", '"inputs" list']),
        (b'{"inputs": "image"}', ["malformed", '"inputs" list']),
        (b"", ["malformed"]),
    ],
)
def test_malformed_json_body_is_a_400(server: Running, body: bytes, words: list[str]) -> None:
    code, answer, _ = post(
        server, "/v2/models/lstm/infer", body, {"Content-Type": "application/json"}
    )
    assert code == 400 and all(w in answer["error"] for w in words), answer


def test_unknown_requested_output_is_a_400(server: Running) -> None:
    body = json_body(*images(1))
    body["outputs"] = [{"name": "nope"}]
    code, answer, _ = post(server, "/v2/models/lstm/infer", json.dumps(body).encode())
    assert code == 400 and "nope" in answer["error"] and "completed" in answer["error"], answer


def test_versioned_infer_url_is_answered(server: Running) -> None:
    image, known_rows = images(1)
    body = json.dumps(json_body(image, known_rows)).encode()
    code, answer, _ = post(server, "/v2/models/lstm/versions/1/infer", body)
    assert code == 404 and "version" in json.dumps(answer).lower(), answer


def test_truncated_binary_body_is_a_400(server: Running, lstm: OrtModel) -> None:
    image, known_rows = images(1)
    inputs = v2_inputs(httpclient, image, known_rows)
    body, json_size = httpclient.InferenceServerClient.generate_request_body(inputs)
    headers = {"Inference-Header-Content-Length": str(json_size)}
    code, answer, _ = post(server, "/v2/models/lstm/infer", body[:-20], headers)
    assert code == 400 and "truncated" in answer["error"], answer
    code, answer, _ = post(server, "/v2/models/lstm/infer", b"{not json", headers)
    assert code == 400, answer
    # the server keeps serving
    result = infer(httpclient, server.url, image, known_rows, binary_data=True)
    np.testing.assert_allclose(result.as_numpy("completed"), lstm.complete(image, known_rows))


def test_bad_grpc_request_is_invalid_argument(server: Running) -> None:
    image, _ = images(1)
    with pytest.raises(InferenceServerException) as caught:
        infer(grpcclient, server.grpc_url, image, np.array([0], np.int64))
    assert "INVALID_ARGUMENT" in caught.value.status() and "known_rows[0]" in str(caught.value)


def test_overload_is_answered_with_503(servers: dict[str, Running], lstm: OrtModel) -> None:
    """A 2-image queue holding requests 300 ms: 8 at once get 2 answers and 6 clear refusals."""
    server = servers["small"]
    image, known_rows = images(1)
    body = json.dumps(json_body(image, known_rows)).encode()
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: post(server, "/v2/models/lstm/infer", body), range(8)))
    codes = sorted(code for code, _, _ in answers)
    assert set(codes) == {200, 503} and codes.count(200) >= 2, codes
    refused = next(a for a in answers if a[0] == 503)
    assert "server busy" in refused[1]["error"] and refused[2]["Retry-After"] == "1"
    big = json.dumps(json_body(*images(3))).encode()
    code, answer, _ = post(server, "/v2/models/lstm/infer", big)
    assert code == 400 and "split it" in answer["error"], answer
    code, answer, _ = post(server, "/v2/models/lstm/infer", body)  # and it recovers
    assert code == 200, answer


def test_binds_loopback_only_by_default(server: Running) -> None:
    """127.0.0.2 reaches this machine too, but not a socket bound to 127.0.0.1 alone."""
    for port in (server.port, server.grpc_port):
        with socket.socket() as s, pytest.raises(ConnectionRefusedError):
            s.connect(("127.0.0.2", port))


def test_taken_port_is_named(tiny_bundles: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["--artifacts", str(tiny_bundles), "--port", str(port), "--grpc-port", "0"]
        result = subprocess.run(
            [sys.executable, "-m", "serve.api", *argv],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
    assert result.returncode == 2 and f"127.0.0.1:{port} is in use" in result.stderr


def test_micro_batcher_gathers_splits_and_refuses() -> None:
    calls: list[int] = []

    def run(image: np.ndarray, known_rows: np.ndarray) -> np.ndarray:
        calls.append(len(image))
        return image * 2 + known_rows[:, None, None]

    async def scenario():
        batcher = MicroBatcher(run, BatchSettings(max_batch=4, max_wait_s=0.05, max_queue=6))
        sizes = [1, 2, 1, 1, 1]  # 6 images: the first call takes 4 of them, whole requests only
        requests = [images(n, seed=i) for i, n in enumerate(sizes)]
        tasks = [asyncio.create_task(batcher.submit(*r)) for r in requests]
        await asyncio.sleep(0)
        with pytest.raises(QueueFull, match="6 images already queued"):
            await batcher.submit(*images(1))
        results = await asyncio.gather(*tasks)
        for (image, known_rows), (completed, _) in zip(requests, results, strict=True):
            np.testing.assert_array_equal(completed, image * 2 + known_rows[:, None, None])
        return batcher.stats.as_dict()

    stats = asyncio.run(scenario())
    assert calls == [4, 2] and stats["refused"] == 1 and stats["mean_batch"] == 3.0


def test_micro_batcher_passes_a_failure_to_every_caller() -> None:
    def run(image: np.ndarray, known_rows: np.ndarray) -> np.ndarray:
        raise RuntimeError("model broke")

    async def scenario():
        batcher = MicroBatcher(run, BatchSettings(max_batch=8, max_wait_s=0.01))
        tasks = [batcher.submit(*images(1, seed=i)) for i in range(3)]
        return await asyncio.gather(*tasks, return_exceptions=True)

    assert [str(r) for r in asyncio.run(scenario())] == ["model broke"] * 3
