"""`<bundle>_sample` and `<bundle>_sample_step` on the v2 API and in the Triton repository, for a
tiny sampling bundle: metadata from the contract, the request's noise giving exactly
onnxruntime's sample, `<bundle>_sample_step` driven row by row (REST and gRPC) equal to
sample.onnx (for a cvae head and a flow head that holds a class, its `kind` carried as state),
bad noise, temperatures, kinds and row_known flags named, no sample models for a bundle that
cannot sample."""

from __future__ import annotations

import importlib.util
import json
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("kserve") is None:
    pytest.skip("the v2 API needs the api extra: pip install '.[api]'", allow_module_level=True)
httpclient = pytest.importorskip("tritonclient.http")
grpcclient = pytest.importorskip("tritonclient.grpc")
from tritonclient.utils import InferenceServerException, np_to_triton_dtype  # noqa: E402

from bench.servers import Running  # noqa: E402
from rowgen import contract  # noqa: E402
from rowgen.bundle import open_bundle  # noqa: E402
from rowgen.sampling import draw_noise  # noqa: E402
from rowgen.stepping import sample_by_steps  # noqa: E402
from serve.runtime import OrtModel  # noqa: E402
from tests.conftest import TINY_HELD, TINY_SAMPLER  # noqa: E402

SAMPLE_MODEL = TINY_SAMPLER + contract.SAMPLE_MODEL_SUFFIX
SAMPLE_STEP_MODEL = TINY_SAMPLER + contract.SAMPLE_STEP_MODEL_SUFFIX
HELD_STEP_MODEL = TINY_HELD + contract.SAMPLE_STEP_MODEL_SUFFIX


@pytest.fixture(scope="module")
def server(sampler_server: Running) -> Running:
    return sampler_server


@pytest.fixture(scope="module")
def sampler(tiny_sampler_bundles: Path) -> OrtModel:
    return OrtModel(tiny_sampler_bundles / TINY_SAMPLER, "cpu")


@pytest.fixture(scope="module")
def held(tiny_sampler_bundles: Path) -> OrtModel:
    """The flow head that holds a class: sample_step takes `kind` and `row_known`."""
    return OrtModel(tiny_sampler_bundles / TINY_HELD, "cpu")


def request(sampler: OrtModel, temperature: float = 1.0, seed: int = 3):
    rng = np.random.default_rng(seed)
    image = rng.random((2, contract.IMAGE_SIZE, contract.IMAGE_SIZE), dtype=np.float32)
    known_rows = np.array([7, 14], np.int64)
    noise = draw_noise(seed, 2, sampler.config.noise_dim)
    temperatures = np.full(2, temperature, np.float32)
    return image, known_rows, noise, temperatures


def infer(server: Running, values) -> np.ndarray:
    client = httpclient.InferenceServerClient(server.url)
    inputs = []
    for spec, value in zip(contract.sample_inputs(values[2].shape[-1]), values, strict=True):
        datatype = np_to_triton_dtype(value.dtype)
        inputs.append(httpclient.InferInput(spec.name, list(value.shape), datatype))
        inputs[-1].set_data_from_numpy(value)
    return client.infer(SAMPLE_MODEL, inputs).as_numpy("completed")


def test_sample_model_follows_the_contract(server: Running, sampler: OrtModel) -> None:
    client = httpclient.InferenceServerClient(server.url)
    assert client.is_model_ready(SAMPLE_MODEL)
    meta = client.get_model_metadata(SAMPLE_MODEL)
    noise_dim = sampler.config.noise_dim
    assert meta["inputs"] == [
        {"name": "image", "datatype": "FP32", "shape": [-1, 28, 28]},
        {"name": "known_rows", "datatype": "INT64", "shape": [-1]},
        {"name": "noise", "datatype": "FP32", "shape": [-1, 27, noise_dim]},
        {"name": "temperature", "datatype": "FP32", "shape": [-1]},
    ]
    step = client.get_model_metadata(SAMPLE_STEP_MODEL)
    assert step["inputs"] == [
        {"name": "row", "datatype": "FP32", "shape": [-1, 28]},
        {"name": "h", "datatype": "FP32", "shape": [-1, 1, 8]},
        {"name": "c", "datatype": "FP32", "shape": [-1, 1, 8]},
        {"name": "noise_row", "datatype": "FP32", "shape": [-1, noise_dim]},
        {"name": "temperature", "datatype": "FP32", "shape": [-1]},
    ]
    assert [o["name"] for o in step["outputs"]] == ["next_row", "h_out", "c_out"]
    held = client.get_model_metadata(HELD_STEP_MODEL)
    classes = [{"name": "kind", "datatype": "FP32", "shape": [-1, 3]}]
    assert held["inputs"] == [
        *step["inputs"][:3],
        *classes,
        {"name": "row_known", "datatype": "FP32", "shape": [-1]},
        {"name": "noise_row", "datatype": "FP32", "shape": [-1, 28]},
        step["inputs"][-1],
    ]
    assert [o["name"] for o in held["outputs"]] == ["next_row", "h_out", "c_out", "kind_out"]
    for suffix in (contract.SAMPLE_MODEL_SUFFIX, contract.SAMPLE_STEP_MODEL_SUFFIX):
        assert not client.is_model_ready("gru" + suffix)  # gru cannot sample


def test_the_requests_noise_gives_onnxruntimes_sample(server: Running, sampler: OrtModel) -> None:
    values = request(sampler)
    np.testing.assert_allclose(infer(server, values), sampler.sample(*values), atol=1e-6)
    other = request(sampler, seed=4)
    assert not np.allclose(infer(server, other), sampler.sample(*values))  # other noise


def sample_step_fn(module, url: str, sampler: OrtModel, name: str = SAMPLE_STEP_MODEL):
    """A step function (rowgen.stepping) that is one `<bundle>_sample_step` request."""
    client = module.InferenceServerClient(url)
    ins, outs = contract.program_specs(contract.SAMPLE_STEP_ONNX, sampler.config)

    def step(*values: np.ndarray) -> list[np.ndarray]:
        inputs = []
        for spec, value in zip(ins, values, strict=True):
            inputs.append(module.InferInput(spec.name, list(value.shape), "FP32"))
            inputs[-1].set_data_from_numpy(np.ascontiguousarray(value, np.float32))
        answer = client.infer(name, inputs)
        return [answer.as_numpy(spec.name) for spec in outs]

    return step


@pytest.mark.parametrize("transport", ["rest", "grpc"])
@pytest.mark.parametrize("bundle", [TINY_SAMPLER, TINY_HELD])
def test_sample_step_row_by_row_equals_sample_onnx(
    server: Running, sampler: OrtModel, held: OrtModel, transport: str, bundle: str
) -> None:
    sampler = held if bundle == TINY_HELD else sampler
    name = bundle + contract.SAMPLE_STEP_MODEL_SUFFIX
    image, known_rows, noise, _ = request(sampler, seed=5)
    temperature = np.array([1.0, 0.5], np.float32)
    module, url = (httpclient, server.url) if transport == "rest" else (grpcclient, server.grpc_url)
    step = sample_step_fn(module, url, sampler, name)
    got = sample_by_steps(step, sampler.config, image, known_rows, noise, temperature)
    want = sampler.sample(image, known_rows, noise, temperature)
    gap = float(np.abs(got - want).max())
    print(f"{name} over {transport} vs sample.onnx: max |difference| {gap:.2e}")
    assert gap <= contract.COMPLETE_TOLERANCE, f"{transport}: completed differs by {gap:.2e}"
    for i, k in enumerate(known_rows):
        assert np.array_equal(got[i, :k], image[i, :k]), f"image {i}: known rows changed"
    other = sample_by_steps(step, sampler.config, image, known_rows, -noise, temperature)
    assert np.abs(other - got).max() > 1e-3, "other noise gave the same sample"


def sample_step_body(
    sampler: OrtModel, noise_row: float, temperature: float, **more: list[float]
) -> dict:
    """A JSON request of one image for `<bundle>_sample_step`: row 0 from zero state; `more`
    sets other inputs by name (a held class's `kind` or `row_known`)."""
    ins = contract.sample_step_inputs(sampler.config)
    values = {
        ins[0].name: [0.5] * contract.IMAGE_SIZE,
        ins[-2].name: [noise_row] * sampler.config.noise_dim,
        ins[-1].name: [temperature],
        **more,
    }
    tensors = []
    for spec in ins:
        shape = [1 if isinstance(d, str) else d for d in spec.shape]
        data = values.get(spec.name, [0.0] * int(np.prod(shape)))  # zero state
        tensors.append({"name": spec.name, "datatype": "FP32", "shape": shape, "data": data})
    return {"inputs": tensors}


@pytest.mark.parametrize(
    ("noise_row", "temperature", "named"),
    [(11.0, 1.0, "'noise_row'"), (-11.0, 1.0, "'noise_row'"), (0.5, 2.5, "temperature[0]"),
     (0.5, -0.5, "temperature[0]")],
)  # fmt: skip
def test_sample_step_refusals_name_the_input(
    server: Running, sampler: OrtModel, noise_row: float, temperature: float, named: str
) -> None:
    body = sample_step_body(sampler, noise_row, temperature)
    assert_refused(server, SAMPLE_STEP_MODEL, body, named)


def assert_refused(server: Running, model: str, body: dict, named: str) -> None:
    """The JSON request `body` is refused over REST (400) and gRPC (INVALID_ARGUMENT), each
    answer naming `named`."""
    url = f"http://{server.url}/v2/models/{model}/infer"
    call = urllib.request.Request(url, json.dumps(body).encode(), method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(call, timeout=30)
    assert refused.value.code == 400
    assert named in refused.value.read().decode()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    inputs = []
    for tensor in body["inputs"]:
        inputs.append(grpcclient.InferInput(tensor["name"], tensor["shape"], "FP32"))
        inputs[-1].set_data_from_numpy(
            np.array(tensor["data"], np.float32).reshape(tensor["shape"])
        )
    with pytest.raises(InferenceServerException) as grpc_refused:
        client.infer(model, inputs)
    assert grpc_refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert named in grpc_refused.value.message()


@pytest.mark.parametrize(
    ("more", "named"),
    [({"row_known": [0.5]}, "row_known[0] is 0.5"), ({"row_known": [2.0]}, "row_known[0]"),
     ({"kind": [0.0, 3.0, 0.0]}, "'kind' has values in [0, 3]"),
     ({"kind": [-1.0, 0.0, 0.0]}, "'kind'")],
)  # fmt: skip
def test_a_held_class_and_its_flag_are_checked(
    server: Running, held: OrtModel, more: dict, named: str
) -> None:
    body = sample_step_body(held, 0.5, 1.0, **{"row_known": [1.0], **more})
    assert_refused(server, HELD_STEP_MODEL, body, named)
    fine = sample_step_body(held, 0.5, 1.0, row_known=[1.0])
    url = f"http://{server.url}/v2/models/{HELD_STEP_MODEL}/infer"
    call = urllib.request.Request(url, json.dumps(fine).encode(), method="POST")
    with urllib.request.urlopen(call, timeout=30) as answered:
        outputs = {o["name"]: o["data"] for o in json.loads(answered.read())["outputs"]}
    assert abs(sum(outputs["kind_out"]) - 1.0) < 1e-5, "a known row decides a class vector"


@pytest.mark.parametrize("temperature", [-0.5, 2.5])
def test_a_bad_temperature_is_named(server: Running, sampler: OrtModel, temperature) -> None:
    image, known_rows, noise, temperatures = request(sampler, temperature)
    body = {
        "inputs": [
            {"name": "image", "datatype": "FP32", "shape": list(image.shape),
             "data": image.ravel().tolist()},
            {"name": "known_rows", "datatype": "INT64", "shape": [2], "data": known_rows.tolist()},
            {"name": "noise", "datatype": "FP32", "shape": list(noise.shape),
             "data": noise.ravel().tolist()},
            {"name": "temperature", "datatype": "FP32", "shape": [2],
             "data": temperatures.tolist()},
        ]
    }  # fmt: skip
    url = f"http://{server.url}/v2/models/{SAMPLE_MODEL}/infer"
    call = urllib.request.Request(url, json.dumps(body).encode(), method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(call, timeout=30)
    assert refused.value.code == 400
    assert "temperature[0]" in refused.value.read().decode()


def test_triton_repository_has_the_sample_model(tiny_sampler_bundles: Path, tmp_path) -> None:
    from export.triton.__main__ import main
    from export.triton.check import read_config
    from export.triton.repository import CONFIG

    out = tmp_path / "triton"
    assert main(["--artifacts", str(tiny_sampler_bundles), "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    served = [
        name + suffix
        for name in (TINY_SAMPLER, TINY_HELD)
        for suffix in ("", "_step", contract.SAMPLE_MODEL_SUFFIX, contract.SAMPLE_STEP_MODEL_SUFFIX)
    ]
    assert names == sorted(["gru", "gru_step", *served])
    config = read_config(out / SAMPLE_MODEL / CONFIG)  # checked against its ONNX on write
    noise_dim = open_bundle(tiny_sampler_bundles / TINY_SAMPLER).config.noise_dim
    assert [i.name for i in config.input] == [s.name for s in contract.sample_inputs(noise_dim)]
    bundle_file = (tiny_sampler_bundles / TINY_SAMPLER / contract.SAMPLE_ONNX).read_bytes()
    assert (out / SAMPLE_MODEL / "1" / "model.onnx").read_bytes() == bundle_file
