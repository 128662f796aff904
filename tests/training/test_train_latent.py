"""Training a cvae head: the latent stage runs, records its bound, and leaves the mean path be."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rowgen import contract
from tests.idx import write_tiny_dataset
from training import train
from training.checkpoint import load_weights


def _argv(tmp_path: Path, data: Path, name: str, *extra: str) -> list[str]:
    return [
        "--cell", "lstm", "--hidden", "8", "--epochs", "1", "--batch-size", "16",
        "--latent-epochs", "1", "--noise-dim", "3", "--data-dir", str(data), "--no-verify",
        "--threads", "1", "--runs", str(tmp_path / "runs"), "--name", name, "--focus", "0",
        *extra,
    ]  # fmt: skip


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    return write_tiny_dataset(tmp_path / "data")


def test_cvae_run_trains_both_stages_then_core_from_keeps_the_mean_path(
    tmp_path: Path, tiny_data: Path
) -> None:
    assert train.main(_argv(tmp_path, tiny_data, "a", "--head", "cvae")) == 0
    first = tmp_path / "runs" / "a"
    model = load_weights(first / contract.WEIGHTS)
    assert model.config.stochastic and model.config.noise_dim == 3
    summary = json.loads((first / train.TRAINING_JSON).read_text())
    assert {f"test_bpp_k{k}" for k in contract.EVAL_KNOWN_ROWS} <= set(summary["metrics"])
    assert len(summary["latent_history"]) == 1 and len(summary["history"]) == 1

    weights = str(first / contract.WEIGHTS)
    argv = [*_argv(tmp_path, tiny_data, "b", "--head", "cvae", "--core-from", weights)]
    argv += ["--seed", "1"]  # its one stage done (--focus 0): the latent head alone trains
    assert train.main(argv) == 0
    second = load_weights(tmp_path / "runs" / "b" / contract.WEIGHTS)
    changed = {
        k for k, v in model.state_dict().items() if not torch.equal(v, second.state_dict()[k])
    }
    assert changed and all(k.startswith("latent.") for k in changed), f"changed: {changed}"
    again = json.loads((tmp_path / "runs" / "b" / train.TRAINING_JSON).read_text())
    assert again["core_training"]["name"] == "a" and again["history"] == summary["history"]
    # The core's record, not the first run's head: a head trained on it is the run's own.
    assert "latent_history" not in again["core_training"] and "latent_history" in again


def test_bad_head_flags_are_clean_exits(tmp_path: Path, tiny_data: Path, capsys) -> None:
    argv = _argv(tmp_path, tiny_data, "c", "--core-from", str(tmp_path / "none.safetensors"))
    assert train.main(argv) == 2
    assert "--head flow" in capsys.readouterr().err
    assert train.main([*argv, "--core-stages", "9"]) == 2
    assert "--core-stages 9: give 1..1" in capsys.readouterr().err
    assert train.main(_argv(tmp_path, tiny_data, "d", "--head", "cvae", "--mode", "window")) == 2
    assert "--head mse" in capsys.readouterr().err
    argv = _argv(tmp_path, tiny_data, "e", "--head", "cvae", "--core-from", str(tmp_path / "x"))
    assert train.main(argv) == 2
    assert "no weights" in capsys.readouterr().err


def test_flow_run_trains_its_head_on_a_given_core_and_leaves_the_mean_path(
    tmp_path: Path, tiny_data: Path
) -> None:
    assert train.main(_argv(tmp_path, tiny_data, "mean")) == 0
    core = tmp_path / "runs" / "mean" / contract.WEIGHTS
    flow = ["--head", "flow", "--flow-width", "8", "--flow-steps", "2", "--flow-epochs", "2"]
    flow += ["--flow-own-epochs", "1", "--rollout-epochs", "1"]
    assert train.main(_argv(tmp_path, tiny_data, "f", *flow, "--core-from", str(core))) == 0
    model = load_weights(tmp_path / "runs" / "f" / contract.WEIGHTS)
    assert model.config.head == "flow" and model.config.noise_dim == 28
    mean = load_weights(core)
    for key, value in mean.state_dict().items():
        assert torch.equal(value, model.state_dict()[key]), f"{key} changed"
    summary = json.loads((tmp_path / "runs" / "f" / train.TRAINING_JSON).read_text())
    losses = [epoch["flow_loss"] for epoch in summary["flow_history"]]
    assert len(losses) == 3 and all(loss == loss and loss > 0 for loss in losses), losses
    reads = [epoch["reads"] for epoch in summary["flow_history"]]
    assert reads == ["real rows", "real rows", "own draws"], reads
    prepared = [i for i, epoch in enumerate(summary["flow_history"]) if "prepare_seconds" in epoch]
    assert prepared == [0, 2], prepared  # each stage's states (and draws) before its first epoch
    scores = [epoch["energy_score"] for epoch in summary["rollout_history"]]
    assert len(scores) == 1 and scores[0] > 0, scores
    assert summary["rollout_recipe"]["draws"] >= 2
