"""evaluation.class_drift: the probes, the drift table and its command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation import class_drift
from tests.conftest import TINY_FLOW, tiny_model
from training.class_probe import fit_class_probe


def striped(labels: np.ndarray, seed: int) -> np.ndarray:
    """Images whose every row is its class's own pattern plus a little noise."""
    patterns = np.random.default_rng(0).random((3, 28), dtype=np.float32)
    rng = np.random.default_rng(seed)
    noise = 0.05 * rng.standard_normal((len(labels), 28, 28)).astype(np.float32)
    return (patterns[labels][:, None, :] + noise).clip(0, 1)


def test_a_probe_separates_classes_a_linear_map_can_and_leaves_the_callers_draws() -> None:
    rng = np.random.default_rng(1)
    centres = 4.0 * rng.standard_normal((3, 8))
    labels = np.arange(600) % 3
    features = centres[labels] + rng.standard_normal((600, 8))
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    probe = fit_class_probe(torch.as_tensor(features[:400]), torch.as_tensor(labels[:400]))
    assert torch.equal(torch.rand(3), expected)  # the global generator is where it was
    right = probe.predict(torch.as_tensor(features[400:])) == torch.as_tensor(labels[400:])
    assert right.float().mean() > 0.97


def test_rows_of_another_class_below_the_prompt_read_as_that_class() -> None:
    model = tiny_model("lstm", hidden=16)
    train_labels, labels = np.arange(300) % 3, np.arange(90) % 3
    train, images = striped(train_labels, 1), striped(labels, 2)
    swapped = images.copy()
    swapped[:, 7:] = striped((labels + 1) % 3, 3)[:, 7:]  # every bottom from the next class
    depths = (7, 14, 28)
    rows = class_drift.drift(
        model, train, train_labels, {"real": images, "swapped": swapped}, labels, depths
    )
    assert rows["real"][7] == rows["swapped"][7]  # the same rows read so far
    assert min(rows["real"].values()) > 0.9
    assert rows["swapped"][28] < 0.2


def test_the_prompt_alone_is_read_three_ways() -> None:
    model = tiny_model("lstm", hidden=16)
    train_labels, labels = np.arange(300) % 3, np.arange(60) % 3
    told = class_drift.prompt_information(
        model, striped(train_labels, 1), train_labels, striped(labels, 2), labels, 7
    )
    assert len(told) == 3 and all(v > 0.9 for v in told.values()), told


def test_command_line_prints_every_table(
    tiny_flow_bundles: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = tiny_flow_bundles / TINY_FLOW
    argv = ["--bundle", str(bundle), "--k", "20", "--train", "1000", "--test", "50"]
    assert class_drift.main([*argv, "--data-dir", str(data_dir), "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "| completions | r=20 | r=21 | r=28 |" in out
    assert f"| {TINY_FLOW} sample.onnx |" in out and "| 10-NN sampler |" in out
    assert "| vote of the 10 nearest training images |" in out
    assert "| class | lstm-flow sample.onnx agreement |" in out and "| Ankle boot |" in out


def test_command_line_refuses_a_bundle_without_a_sampler(tiny_bundles: Path) -> None:
    with pytest.raises(SystemExit, match="has no sampler; give a flow or cvae bundle"):
        class_drift.main(["--bundle", str(tiny_bundles / "gru")])


def test_command_line_refuses_known_rows_outside_the_contract(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        class_drift.main(["--k", "0", "14"])
    assert "--k [0]: known rows run from 1 to 27" in capsys.readouterr().err


def test_judged_by_class_gives_each_classs_agreement_and_its_likeliest_mistake() -> None:
    labels = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = {
        "a": np.array([0, 0, 0, 2, 1, 1, 2, 1]),
        "b": np.array([1, 1, 2, 0, 0, 1, 2, 2]),
    }
    rows = class_drift.judged_by_class(predicted, labels, ["x", "y", "z"])
    assert rows == [
        ["x", "0.750", "z 0.250", "0.250", "y 0.500"],
        ["y", "1.000", "x 0.000", "0.500", "x 0.500"],
        ["z", "0.500", "y 0.500", "1.000", "x 0.000"],
    ]
