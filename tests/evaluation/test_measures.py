"""The sample measures: Fréchet distance, the classifier, the 10-NN sampler, bits per pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation import baselines, classifier, sample_measures
from evaluation.frechet import feature_stats, frechet_distance
from evaluation.sweep_sampler import eager_sampler, teacher_forced_sampler
from rowgen import contract
from rowgen.bundle import open_bundle
from tests.conftest import TINY_SAMPLER, tiny_flow_sampler


def test_frechet_distance_of_identical_statistics_is_zero() -> None:
    x = np.random.default_rng(0).normal(size=(500, 6))
    stats = feature_stats(x)
    assert frechet_distance(*stats, *stats) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_matches_the_closed_form_for_gaussians() -> None:
    dim, shift = 5, np.arange(5.0)
    eye = np.eye(dim)
    assert frechet_distance(np.zeros(dim), eye, shift, eye) == pytest.approx(shift @ shift)
    # N(0, a² I) vs N(0, b² I): tr(a² I + b² I - 2 ab I) = D (a - b)²
    got = frechet_distance(np.zeros(dim), 4.0 * eye, np.zeros(dim), 0.25 * eye)
    assert got == pytest.approx(dim * (2.0 - 0.5) ** 2)
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(dim, dim)), rng.normal(size=(dim, dim))
    cov_a, cov_b = a @ a.T, b @ b.T
    values = np.linalg.eigvals(cov_a @ cov_b)  # the textbook route, well-posed here
    want = np.trace(cov_a) + np.trace(cov_b) - 2 * np.sqrt(values.real).sum()
    assert frechet_distance(np.zeros(dim), cov_a, np.zeros(dim), cov_b) == pytest.approx(want)
    with pytest.raises(ValueError, match="features shaped"):
        feature_stats(np.zeros(7))


def test_classifier_learns_a_separable_toy_task_and_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.random((256, 28, 28), dtype=np.float32) * 0.2
    labels = np.arange(256) % 2
    images[labels == 1, :14] += 0.8  # class 1: a bright top half
    net = classifier.train(torch.from_numpy(images), torch.from_numpy(labels), epochs=6, batch=16)
    features, predicted = classifier.embed(net, images)
    assert features.shape == (256, classifier.FEATURES)
    assert np.mean(predicted == labels) > 0.9
    classifier.save(net, tmp_path / "c.safetensors", {"test_accuracy": 0.5})
    again, info = classifier.load(tmp_path / "c.safetensors")
    assert info["test_accuracy"] == 0.5
    np.testing.assert_array_equal(classifier.embed(again, images)[1], predicted)
    with pytest.raises(FileNotFoundError, match="make classifier"):
        classifier.load(tmp_path / "missing.safetensors")


def test_nearest_sampler_draws_bottoms_of_the_nearest_training_images() -> None:
    rng = np.random.default_rng(0)
    train = rng.random((50, 28, 28), dtype=np.float32)
    images = train[:6] + 0.01  # each query is nearest its own training image
    neighbours = sample_measures.Neighbours(train)
    run = neighbours.sample
    a, b = run(images, 9, 1), run(images, 9, 2)
    assert not np.array_equal(a, b) and np.array_equal(a, run(images, 9, 1))
    np.testing.assert_array_equal(a[:, :9], images[:, :9])
    assert neighbours.index(images, 9)[:, 0].tolist() == list(range(6))  # itself first
    want = baselines.nearest_mean(train, images, 9, 10)
    np.testing.assert_allclose(neighbours.mean(images, 9), want, rtol=1e-6)
    nearest = baselines.nearest(train[:, :9].reshape(50, -1), images[:, :9].reshape(6, -1), 10)
    for i in range(6):  # every sampled bottom is one of that prompt's 10 neighbours'
        assert any(np.array_equal(a[i, 9:], train[j, 9:]) for j in nearest[i])


def test_per_position_bits_of_constant_and_uniform_pixels() -> None:
    rng = np.random.default_rng(0)
    flat = np.zeros((200, 28, 28), np.float32)
    want = -np.log2(201 / (200 + 256))  # add-one smoothing: 200 zeros seen, 256 levels
    assert sample_measures.per_position_bits(flat, flat[:10], 14) == pytest.approx(want)
    noise = rng.integers(0, 256, (4000, 28, 28)).astype(np.float32) / 255
    assert sample_measures.per_position_bits(noise, noise[:50], 20) == pytest.approx(8.0, abs=0.3)


def test_sharpness_splits_into_across_and_row_to_row() -> None:
    real = np.zeros((3, 28, 28), np.float32)
    real[:, :, ::2] = 1.0  # vertical stripes: every pair across differs, no pair down
    streaks = np.zeros_like(real)
    streaks[:, ::2] = 1.0  # horizontal stripes: the reverse
    assert sample_measures.neighbour_differences(real, 14) == (1.0, 0.0)
    assert sample_measures.neighbour_differences(streaks, 14) == (0.0, 1.0)
    assert sample_measures.sharpness(real, 14) == sample_measures.sharpness(streaks, 14) == 0.5
    half = streaks.copy()
    half[:, 1::2] = 0.5  # rows alternate 1, 0.5: half the real row-to-row difference
    assert sample_measures.row_to_row(half, streaks, 14) == pytest.approx(0.5)


def test_sampling_report_on_tiny_bundles(tiny_sampler_bundles: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train = rng.random((60, 28, 28), dtype=np.float32)
    images = rng.random((20, 28, 28), dtype=np.float32)
    labels = np.arange(20) % 10
    bundles = [open_bundle(tiny_sampler_bundles / n) for n in ("gru", TINY_SAMPLER)]
    torch.manual_seed(0)
    net = classifier.FeatureNet().eval()
    means = {"gru": lambda x, k: baselines.nearest_mean(train, x, k, 3)}
    report = sample_measures.sampling_report(
        train, images, labels, means, bundles, net, tmp_path, [str(c) for c in range(10)]
    )
    methods = report["methods"]
    want = ["real test images", "10-NN mean", "gru", "10-NN sampler", "lstm-cvae sample"]
    assert list(methods) == want
    for name, m in methods.items():
        for k in sample_measures.SAMPLE_KS:
            assert m[f"frechet_k{k}"] >= -1e-9 and 0 <= m[f"class_agreement_k{k}"] <= 1, name
            assert m[f"row_to_row_k{k}"] > 0, name
    assert methods["lstm-cvae sample"]["diversity_k14"] > 0
    assert methods["10-NN mean"]["diversity_k14"] == 0
    gaps = report["runtimes_vs_eager_max_abs_diff"]["lstm-cvae"]
    assert list(gaps) == [f"k={k}" for k in sample_measures.SAMPLE_KS]
    for by_runtime in gaps.values():
        assert len(by_runtime) == 6 and max(by_runtime.values()) <= 1e-4, gaps
        one_step = by_runtime[f"{contract.SAMPLE_STEP_ONNX} one step from eager's row and state"]
        assert 0 < one_step <= contract.STEP_TOLERANCE, gaps
    bits = report["likelihood_bits_per_pixel"]
    assert set(bits) == {"per-position histogram", "lstm-cvae"}
    assert (tmp_path / "lstm-cvae-samples.png").read_bytes()[:4] == b"\x89PNG"
    text = sample_measures.markdown({**report, "classifier": {}})
    assert "## Sampled completions" in text and "row-to-row / real k=14" in text


def test_teacher_forced_draws_keep_the_prompt_and_start_as_a_completion_does() -> None:
    model = tiny_flow_sampler()
    images = np.random.default_rng(0).random((6, 28, 28), dtype=np.float32)
    forced = teacher_forced_sampler(model)(images, 10, 5)
    completed = eager_sampler(model)(images, 10, 5)
    np.testing.assert_array_equal(forced[:, :10], images[:, :10])
    # Row 10 is drawn from the real rows 0..9 either way, with the same noise: the same draw (to
    # float rounding: the two read the rows in other orders, and the tiny head's random class
    # probe, sharpened by 1 / CLASS_TEMPERATURE, magnifies a rounding difference in the state).
    np.testing.assert_allclose(forced[:, 10], completed[:, 10], atol=1e-4)
    # Below it, one reads real rows and the other its own draws.
    assert np.abs(forced[:, 11:] - completed[:, 11:]).max() > 1e-3
