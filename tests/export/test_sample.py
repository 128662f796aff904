"""Sampled completions: the latent head's maths, sample.onnx parity and its contract rules."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export.errors import ParityError
from export.validate_sample import one_step_gaps, validate_sample
from export.writers import check_onnx, quiet_exporters
from rowgen import contract
from rowgen.bundle import BundleError, open_bundle
from rowgen.config import ModelConfig
from rowgen.sampling import draw_noise
from tests.conftest import TINY_SAMPLER, tiny_sampler
from training.latent import discretized_logistic_nll, gaussian_kl, sample
from training.model import complete


def _session(folder: Path) -> ort.InferenceSession:
    path = folder / TINY_SAMPLER / contract.SAMPLE_ONNX
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(session, image, known, noise, temperature) -> np.ndarray:
    names = [s.name for s in contract.sample_inputs(noise.shape[-1])]
    feeds = dict(zip(names, (image, known, noise, temperature), strict=True))
    return session.run(None, feeds)[0]


def _images(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, 28, 28), dtype=np.float32)


def test_config_keeps_old_manifests_and_refuses_bad_heads() -> None:
    plain = ModelConfig("lstm", "stream", 256, 1)
    assert plain.to_dict() == {"cell": "lstm", "mode": "stream", "hidden": 256, "layers": 1}
    assert ModelConfig.from_dict(plain.to_dict()) == plain
    cvae = ModelConfig("lstm", "stream", 8, 1, "cvae", 4)
    assert ModelConfig.from_dict(cvae.to_dict()) == cvae and cvae.stochastic
    with pytest.raises(ValueError, match="noise_dim >= 1"):
        ModelConfig("lstm", "stream", 8, 1, "cvae", 0)
    with pytest.raises(ValueError, match="mode 'stream'"):
        ModelConfig("lstm", "window", 8, 1, "cvae", 4)
    with pytest.raises(ValueError, match="needs head 'cvae'"):
        ModelConfig("lstm", "stream", 8, 1, "mse", 4)
    assert "sample.onnx" not in contract.as_data(plain)  # plain bundles' contracts unchanged
    assert contract.as_data(cvae)["sample.onnx"]["inputs"][2]["shape"] == ("batch", 27, 4)


def test_discretized_logistic_is_a_distribution_over_the_256_levels() -> None:
    levels = torch.arange(256, dtype=torch.float32)[:, None] / 255.0  # (256, 1)
    mean = torch.tensor([[-0.2, 0.0, 0.37, 0.5, 1.0, 1.3]])
    log_scale = torch.tensor([[-1.0, -4.0, -2.5, -6.9, -3.0, -5.0]])
    probs = torch.exp(-discretized_logistic_nll(levels, mean, log_scale))  # (256, 6)
    assert torch.allclose(probs.sum(0), torch.ones(6), atol=2e-3), probs.sum(0)


def test_gaussian_kl_matches_the_closed_form() -> None:
    mu_q, mu_p = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.0, 0.0]])
    log_var_q, log_var_p = torch.log(torch.tensor([[2.0, 0.5]])), torch.zeros(1, 2)
    want = sum(0.5 * (v + m * m - 1 - math.log(v)) for v, m in ((2.0, 0.5), (0.5, -1.0)))
    assert float(gaussian_kl(mu_q, log_var_q, mu_p, log_var_p).sum()) == pytest.approx(
        want, rel=1e-5
    )
    assert float(gaussian_kl(mu_q, log_var_q, mu_q, log_var_q).sum()) == pytest.approx(
        0.0, abs=1e-6
    )


def test_sample_bundle_keeps_the_contract(tiny_sampler_bundles: Path) -> None:
    bundle = open_bundle(tiny_sampler_bundles / TINY_SAMPLER)
    config = bundle.config
    path = bundle.file(contract.SAMPLE_ONNX)
    check_onnx(path, contract.sample_inputs(4), contract.sample_outputs(), config)
    model = onnx.load(str(path))
    assert not {n.op_type for n in model.graph.node} & {"RandomNormal", "RandomNormalLike"}
    props = {p.key: p.value for p in model.metadata_props}
    assert props["rowgen.noise_dim"] == "4" and props["rowgen.head"] == "cvae"
    manifest = bundle.manifest
    assert manifest["contract"]["noise_dim"] == 4
    for name in contract.SAMPLE_FILES:
        assert manifest["files"][name]["bytes"] == bundle.file(name).stat().st_size
    for program in (contract.SAMPLE_ONNX, contract.SAMPLE_TS, "sample_reference_evaluator"):
        assert manifest["parity"][program]["max_abs_diff"]["completed"] <= 1e-4, program
    plain = open_bundle(tiny_sampler_bundles / "gru")
    assert contract.SAMPLE_ONNX not in plain.manifest["files"]


def test_sample_onnx_matches_eager_and_torchscript_across_batches(
    tiny_sampler_bundles: Path,
) -> None:
    model = tiny_sampler()
    with quiet_exporters():
        scripted = torch.jit.load(str(tiny_sampler_bundles / TINY_SAMPLER / contract.SAMPLE_TS))
    session = _session(tiny_sampler_bundles)
    for batch in (1, 5, 130):  # the batch axis really is dynamic
        image = _images(batch, batch)
        known = np.random.default_rng(batch).integers(0, 30, batch)
        noise = draw_noise(batch, batch, 4)
        temperature = np.linspace(-0.5, 2.0, batch, dtype=np.float32)
        got = _run(session, image, known, noise, temperature)
        args = [torch.from_numpy(a) for a in (image, known, noise, temperature)]
        want = sample(model, *args).numpy()
        assert np.abs(got - want).max() <= contract.COMPLETE_TOLERANCE, f"batch {batch}"
        with torch.no_grad():
            assert np.abs(scripted(*args).numpy() - want).max() <= contract.COMPLETE_TOLERANCE


def test_noise_decides_the_sample(tiny_sampler_bundles: Path) -> None:
    session = _session(tiny_sampler_bundles)
    image = np.repeat(_images(1), 8, axis=0)
    known, warm = np.full(8, 10, np.int64), np.ones(8, np.float32)
    first = _run(session, image, known, draw_noise(7, 8, 4), warm)
    again = _run(session, image, known, draw_noise(7, 8, 4), warm)
    assert np.array_equal(first, again), "the same seed must give the same samples"
    other = _run(session, image, known, draw_noise(8, 8, 4), warm)
    assert np.abs(other[:, 10:] - first[:, 10:]).mean() > 1e-3, "other noise, same rows"
    spread = np.abs(first[:, None, 10:] - first[None, :, 10:]).mean(axis=(2, 3))
    assert (spread[~np.eye(8, dtype=bool)] > 1e-4).all(), "two of the 8 samples are equal"
    np.testing.assert_array_equal(first[:, :10], image[:, :10])  # known rows: exact copies


def test_temperature_zero_is_deterministic_and_negative_acts_as_zero(
    tiny_sampler_bundles: Path,
) -> None:
    session = _session(tiny_sampler_bundles)
    image, known = _images(4), np.array([1, 7, 14, 27])
    cold = [
        _run(session, image, known, draw_noise(s, 4, 4), np.zeros(4, np.float32)) for s in (0, 1)
    ]
    assert np.array_equal(cold[0], cold[1]), "temperature 0 must not depend on the noise"
    below = _run(session, image, known, draw_noise(2, 4, 4), np.full(4, -3.0, np.float32))
    assert np.array_equal(below, cold[0])


def test_mean_programs_of_a_stochastic_bundle_are_the_mean_head(
    tiny_sampler_bundles: Path,
) -> None:
    folder = tiny_sampler_bundles / TINY_SAMPLER
    session = ort.InferenceSession(
        str(folder / contract.COMPLETE_ONNX), providers=["CPUExecutionProvider"]
    )
    image, known = _images(3), np.array([3, 9, 20])
    got = session.run(None, {"image": image, "known_rows": known})[0]
    want = complete(tiny_sampler(), torch.from_numpy(image), torch.from_numpy(known)).numpy()
    assert np.abs(got - want).max() <= contract.COMPLETE_TOLERANCE


def test_a_drifted_sample_program_is_caught(tiny_sampler_bundles: Path) -> None:
    other = tiny_sampler(seed=1)  # same shapes, other weights: parity must fail and say where
    with pytest.raises(ParityError, match=r"sample_step\.onnx, one step .*: next_row differs"):
        validate_sample(tiny_sampler_bundles / TINY_SAMPLER, other)


def test_a_drift_too_small_to_see_in_a_whole_completion_is_caught_in_one_step(
    tiny_sampler_bundles: Path,
) -> None:
    folder = tiny_sampler_bundles / TINY_SAMPLER
    nudged = tiny_sampler()
    with torch.no_grad():
        nudged.rnn.bias_hh_l0.add_(3e-4)  # a program a little off, as a wrong kernel would be
    session = ort.InferenceSession(
        str(folder / contract.SAMPLE_ONNX), providers=["CPUExecutionProvider"]
    )
    image, known = _images(3), np.array([1, 9, 20])
    noise, temperature = draw_noise(3, 3, 4), np.ones(3, np.float32)
    got = _run(session, image, known, noise, temperature)
    with torch.no_grad():
        want = sample(nudged, *(torch.from_numpy(a) for a in (image, known, noise, temperature)))
    gap = float(np.abs(got - want.numpy()).max())
    assert contract.STEP_TOLERANCE < gap < contract.SAMPLE_TOLERANCE, gap  # passes as a whole
    with pytest.raises(ParityError, match=r"one step from eager's row and state: \w+ differs"):
        validate_sample(folder, nudged)


def test_one_step_gaps_keep_the_largest_gap_and_any_nan() -> None:
    answers = iter([[0.5, 0.0], [np.nan, 0.0], [0.0, 0.0]])
    worst: dict[str, float] = {}
    step = one_step_gaps(
        lambda *inputs: [np.zeros(2, np.float32)],
        lambda *inputs: [np.array(next(answers), np.float32)],
        ["next_row"],
        worst,
    )
    step()
    assert worst == {"next_row": 0.5}
    step()
    step()  # a good step after a NaN must not hide it
    assert math.isnan(worst["next_row"])


def test_manifest_without_sample_file_is_refused(
    tiny_sampler_bundles: Path, tmp_path: Path
) -> None:
    folder = tmp_path / TINY_SAMPLER
    shutil.copytree(tiny_sampler_bundles / TINY_SAMPLER, folder)
    manifest = json.loads((folder / contract.MANIFEST).read_text())
    del manifest["files"][contract.SAMPLE_TS]
    (folder / contract.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"lists no sample\.ts"):
        open_bundle(folder)
