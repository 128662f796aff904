"""Fast tests of the evaluation (evaluation.evaluate) and its baselines (evaluation.baselines)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from evaluation import baselines, evaluate
from rowgen import contract
from rowgen.bundle import open_bundle
from rowgen.datasets import CLASS_NAMES
from tests.idx import write_tiny_dataset
from training import data
from training.checkpoint import load_weights
from training.model import complete, completion_mse


def mse(completed: np.ndarray, images: np.ndarray, k: int) -> float:
    return completion_mse(torch.from_numpy(completed), torch.from_numpy(images), k)


def linear_images(n: int, seed: int = 0) -> np.ndarray:
    """Images whose lower rows are a fixed linear mix of the top rows plus a little noise."""
    rng = np.random.default_rng(seed)
    top = rng.random((n, 14 * 28), dtype=np.float32)
    mix = np.random.default_rng(99).normal(0, 0.05, (14 * 28, 14 * 28)).astype(np.float32)
    bottom = np.clip(0.5 + top @ mix * 0.5 + rng.normal(0, 0.01, top.shape), 0, 1)
    return np.concatenate([top, bottom], axis=1).reshape(n, 28, 28).astype(np.float32)


def test_ridge_beats_the_mean_image_on_linear_data() -> None:
    train, test = linear_images(2000), linear_images(200, seed=1)
    lam = baselines.choose_lambda(train, 14)
    assert lam in baselines.LAMBDAS
    by_ridge = baselines.ridge(train, test, 14, lam)
    by_mean = baselines.mean_image(train, test, 14)
    assert np.array_equal(by_ridge[:, :14], test[:, :14]), "known rows must be copied"
    assert mse(by_ridge, test, 14) < 0.2 * mse(by_mean, test, 14)


def test_fit_ridge_recovers_an_exact_linear_map() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 6)).astype(np.float32)
    w_true = rng.normal(size=(6, 3))
    y = (x @ w_true + np.array([1.0, -2.0, 0.5])).astype(np.float32)
    w, b = baselines.fit_ridge(x, y, lam=1e-6)
    np.testing.assert_allclose(w, w_true, atol=1e-4)
    np.testing.assert_allclose(b, [1.0, -2.0, 0.5], atol=1e-4)


def test_nearest_neighbours_of_a_training_image_start_with_itself() -> None:
    train = np.random.default_rng(0).random((300, 28, 28), dtype=np.float32)
    flat = train[:, :14].reshape(300, -1)
    found = baselines.nearest(flat, flat[:40], 10, chunk=16)
    assert found.shape == (40, 10)
    assert np.array_equal(found[:, 0], np.arange(40))
    brute = np.argsort(((flat[:40, None] - flat[None]) ** 2).sum(-1), axis=1)[:, :10]
    assert np.array_equal(found, brute)


def test_nearest_mean_is_the_mean_of_the_neighbours_rows() -> None:
    train = np.random.default_rng(0).random((50, 28, 28), dtype=np.float32)
    done = baselines.nearest_mean(train, train[:3], 20, n=1)
    np.testing.assert_array_equal(done, train[:3])  # one neighbour: the image itself
    done = baselines.nearest_mean(train, train[:2], 7, n=500)  # more than there are: all
    want = np.broadcast_to(train[:, 7:].mean(0), (2, 21, 28))
    np.testing.assert_allclose(done[:, 7:], want, atol=1e-6)


def test_baselines_on_real_fashion_mnist(data_dir: Path) -> None:
    train = data.load_split("fashion-mnist", "train", data_dir).images[:3000].numpy()
    test = data.load_split("fashion-mnist", "test", data_dir).images[:300].numpy()
    k = 14
    by_mean = mse(baselines.mean_image(train, test, k), test, k)
    by_ridge = mse(baselines.ridge(train, test, k, baselines.choose_lambda(train, k)), test, k)
    by_nn = mse(baselines.nearest_mean(train, test, k), test, k)
    assert 0.05 < by_mean < 0.15, f"mean image MSE {by_mean}"
    assert by_ridge < 0.75 * by_mean, f"ridge {by_ridge} vs mean image {by_mean}"
    assert by_nn < 0.75 * by_mean, f"10-NN {by_nn} vs mean image {by_mean}"


@pytest.fixture(scope="module")
def eval_run(tiny_bundles: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """evaluation.evaluate end to end on tiny IDX files (the window bundle is left out: onnxruntime
    takes minutes to open its 16k-node complete.onnx on a small CPU)."""
    root = tmp_path_factory.mktemp("eval")
    folder = write_tiny_dataset(root / "data", n_train=120, n_test=40)
    argv = ["--artifacts", str(tiny_bundles), "--bundles", "lstm", "gru", "rnn"]
    argv += ["--data-dir", str(folder), "--no-verify", "--out", str(root / "out")]
    assert evaluate.main([*argv, "--limit", "30", "--train-limit", "100"]) == 0
    return root


def test_eval_reports_every_method_at_every_k(eval_run: Path) -> None:
    results = json.loads((eval_run / "out" / "eval.json").read_text())
    assert (results["test_images"], results["train_images"]) == (30, 100)
    methods = results["methods"]
    simple = ["mean training image", "ridge on known rows", "10-NN mean"]
    assert list(methods) == [*simple, "lstm", "gru", "rnn"]
    classes = set(CLASS_NAMES["fashion-mnist"])
    for name, m in methods.items():
        for k in contract.EVAL_KNOWN_ROWS:
            assert 0 < m[f"test_mse_k{k}"] < 1, f"{name} k={k}: {m[f'test_mse_k{k}']}"
        assert m["per_class_k14"] and set(m["per_class_k14"]) <= classes
    assert set(methods["ridge on known rows"]["lambda"].values()) <= set(baselines.LAMBDAS)


def test_eval_numbers_are_the_models_own(eval_run: Path, tiny_bundles: Path) -> None:
    """complete.onnx is what is scored; it must give the eager model's MSE."""
    results = json.loads((eval_run / "out" / "eval.json").read_text())
    images = data.load_split("fashion-mnist", "test", eval_run / "data", verify=False).images[:30]
    model = load_weights(open_bundle(tiny_bundles / "gru").file(contract.WEIGHTS))
    for k in contract.EVAL_KNOWN_ROWS:
        done = complete(model, images, torch.full((30,), k))
        want = completion_mse(done, images, k)
        assert results["methods"]["gru"][f"test_mse_k{k}"] == pytest.approx(want, abs=1e-6)


def test_eval_writes_markdown_and_one_grid_per_bundle(eval_run: Path) -> None:
    out = eval_run / "out"
    report = (out / "eval.md").read_text()
    assert "| method | kind | k=7 | k=14 | k=21 |" in report
    assert "## Per class, known_rows 14" in report and "| lstm |" in report
    for name in ("lstm", "gru", "rnn"):
        with Image.open(out / f"{name}-grid.png") as png:
            assert png.format == "PNG" and png.width > png.height
    assert not (out / "mean training image-grid.png").exists()


def test_every_bundle_is_evaluated_unless_names_are_given(tiny_bundles: Path) -> None:
    args = evaluate.parse_args(["--artifacts", str(tiny_bundles)])
    assert [p.name for p in evaluate.pick_bundles(args)] == ["gru", "lstm", "lstm-window", "rnn"]
    args = evaluate.parse_args(["--artifacts", str(tiny_bundles), "--bundles", "rnn"])
    assert evaluate.pick_bundles(args) == [tiny_bundles / "rnn"]
