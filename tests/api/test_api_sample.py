"""`<bundle>_sample` on the v2 API and in the Triton repository, for a tiny sampling bundle:
metadata from the contract, the request's noise giving exactly onnxruntime's sample, bad
temperatures named, no sample model for a bundle that cannot sample."""

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
from tritonclient.utils import np_to_triton_dtype  # noqa: E402

from bench.servers import Running  # noqa: E402
from rowgen import contract  # noqa: E402
from rowgen.bundle import open_bundle  # noqa: E402
from rowgen.sampling import draw_noise  # noqa: E402
from serve.runtime import OrtModel  # noqa: E402
from tests.conftest import TINY_SAMPLER  # noqa: E402

SAMPLE_MODEL = TINY_SAMPLER + contract.SAMPLE_MODEL_SUFFIX


@pytest.fixture(scope="module")
def server(sampler_server: Running) -> Running:
    return sampler_server


@pytest.fixture(scope="module")
def sampler(tiny_sampler_bundles: Path) -> OrtModel:
    return OrtModel(tiny_sampler_bundles / TINY_SAMPLER, "cpu")


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
    assert not client.is_model_ready("gru" + contract.SAMPLE_MODEL_SUFFIX)  # gru cannot sample


def test_the_requests_noise_gives_onnxruntimes_sample(server: Running, sampler: OrtModel) -> None:
    values = request(sampler)
    np.testing.assert_allclose(infer(server, values), sampler.sample(*values), atol=1e-6)
    other = request(sampler, seed=4)
    assert not np.allclose(infer(server, other), sampler.sample(*values))  # other noise


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
    from export import triton
    from export.triton_check import read_config

    out = tmp_path / "triton"
    assert triton.main(["--artifacts", str(tiny_sampler_bundles), "--out", str(out)]) == 0
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert names == sorted(["gru", "gru_step", TINY_SAMPLER, TINY_SAMPLER + "_step", SAMPLE_MODEL])
    config = read_config(out / SAMPLE_MODEL / triton.CONFIG)  # checked against its ONNX on write
    noise_dim = open_bundle(tiny_sampler_bundles / TINY_SAMPLER).config.noise_dim
    assert [i.name for i in config.input] == [s.name for s in contract.sample_inputs(noise_dim)]
    bundle_file = (tiny_sampler_bundles / TINY_SAMPLER / contract.SAMPLE_ONNX).read_bytes()
    assert (out / SAMPLE_MODEL / "1" / "model.onnx").read_bytes() == bundle_file
