"""Training CLI: a smoke run writes a loadable run; a killed run resumes to the same result."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from safetensors.torch import load_file
from tqdm import tqdm

from rowgen import contract
from rowgen.config import ModelConfig
from tests.idx import write_tiny_dataset
from training import loop, stages, train
from training.checkpoint import load_checkpoint, load_weights
from training.model import RowGenerator
from training.recipe import FOCUS


def _argv(tmp_path: Path, data: Path, *extra: str) -> list[str]:
    return [
        "--cell",
        "gru",
        "--hidden",
        "8",
        "--epochs",
        "2",
        "--free-run-from",
        "1",
        "--batch-size",
        "16",
        "--data-dir",
        str(data),
        "--no-verify",
        "--threads",
        "1",
        "--runs",
        str(tmp_path / "runs"),
        "--focus",
        "0",
        *extra,
    ]


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    return write_tiny_dataset(tmp_path / "data")


def test_smoke_run_writes_loadable_outputs(tmp_path: Path, tiny_data: Path) -> None:
    assert train.main(_argv(tmp_path, tiny_data)) == 0
    out = tmp_path / "runs" / "gru"
    model = load_weights(out / contract.WEIGHTS)
    assert model.config.cell == "gru" and model.config.hidden == 8
    summary = json.loads((out / train.TRAINING_JSON).read_text())
    assert set(summary["metrics"]) == {f"test_mse_k{k}" for k in contract.EVAL_KNOWN_ROWS}
    assert len(summary["history"]) == 2 and summary["history"][1]["free_run"]
    for png in (train.LOSS_PNG, train.GRID_PNG):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert load_checkpoint(tmp_path / "runs" / "gru" / "checkpoint.pt")["history"][-1]["epoch"] == 1


def kill_then_resume(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], at_epoch: int, done: int
) -> None:
    """Run `argv` killed at the start of its `at_epoch`-th epoch (1-based), check that `done`
    epochs were checkpointed, then resume it to the end."""
    real_epoch = stages.train_epoch
    calls = {"n": 0}

    def dies(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at_epoch:
            raise KeyboardInterrupt  # as if the process were killed mid-epoch
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(stages, "train_epoch", dies)
    with pytest.raises(KeyboardInterrupt):
        train.main(argv)
    monkeypatch.setattr(stages, "train_epoch", real_epoch)
    runs = Path(argv[argv.index("--runs") + 1])
    assert len(load_checkpoint(runs / "gru" / "checkpoint.pt")["history"]) == done
    assert train.main([*argv, "--resume"]) == 0


def test_killed_run_resumes_to_the_uninterrupted_result(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    straight = tmp_path / "straight"
    assert train.main(_argv(straight, tiny_data)) == 0

    killed = tmp_path / "killed"
    kill_then_resume(monkeypatch, _argv(killed, tiny_data), at_epoch=2, done=1)
    a = load_file(str(straight / "runs" / "gru" / contract.WEIGHTS))
    b = load_file(str(killed / "runs" / "gru" / contract.WEIGHTS))
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"


def test_focus_stages_follow_and_a_kill_inside_one_resumes_exactly(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stream recipe's focus stages run after it, each epoch recorded with its stage; a run
    killed in the second focus epoch resumes (with that stage's optimizer state) to the same
    weights as one never killed."""
    focus = [*_argv(tmp_path, tiny_data), "--focus", "1"]  # the last --focus wins
    assert train.main(focus) == 0
    history = json.loads((tmp_path / "runs" / "gru" / train.TRAINING_JSON).read_text())["history"]
    plan = [(0, 0), (0, 1)] + [(s, e) for s, r in enumerate(FOCUS, 1) for e in range(r.epochs)]
    assert [(h["stage"], h["stage_epoch"]) for h in history] == plan
    assert [h["epoch"] for h in history] == list(range(len(plan)))

    killed = tmp_path / "killed"
    kill_then_resume(monkeypatch, [*_argv(killed, tiny_data), "--focus", "1"], at_epoch=4, done=3)
    a = load_file(str(tmp_path / "runs" / "gru" / contract.WEIGHTS))
    b = load_file(str(killed / "runs" / "gru" / contract.WEIGHTS))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_other_flags_is_refused(
    tmp_path: Path, tiny_data: Path, capsys: pytest.CaptureFixture
) -> None:
    assert train.main(_argv(tmp_path, tiny_data)) == 0
    assert train.main([*_argv(tmp_path, tiny_data, "--resume"), "--lr", "0.5"]) == 2
    # only the focus stages differ: the message must say so, not print two equal recipes
    capsys.readouterr()
    assert train.main([*_argv(tmp_path, tiny_data, "--resume"), "--focus", "1"]) == 2
    assert "0 focus stage(s) (--focus 0)" in capsys.readouterr().err


def test_missing_data_is_a_clean_exit(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert train.main(_argv(tmp_path, tmp_path / "nowhere")) == 2
    assert "lacks" in capsys.readouterr().err


class _CountingBar(tqdm):
    """A bar on a clock that moves 1 s per reading (every update is due for a redraw), which
    records the count each redraw shows while the epoch runs."""

    shown: ClassVar[list[int]] = []
    _closing = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        clock = itertools.count(self.start_t + 1.0)
        self._time = lambda: float(next(clock))

    def display(self, *args, **kwargs):
        if not self._closing:
            type(self).shown.append(self.n)
        return super().display(*args, **kwargs)

    def close(self) -> None:
        self._closing = True
        super().close()


@pytest.mark.parametrize("mode", ["stream", "window"])
def test_progress_bar_advances_in_every_mode(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    """Every redraw shows a new count, up to the number of batches (no stale 0/N)."""
    model = RowGenerator(ModelConfig("lstm", mode, 6, 1))
    images = torch.rand(48, contract.IMAGE_SIZE, contract.IMAGE_SIZE)
    monkeypatch.setattr(loop, "tqdm", _CountingBar)
    _CountingBar.shown = []
    optimizer = torch.optim.Adam(model.parameters())
    generator = torch.Generator().manual_seed(0)
    batches = math.ceil(len(images) * (14 if mode == "window" else 1) / 16)
    cpu = torch.device("cpu")
    loop.train_epoch(model, images, optimizer, 16, False, False, (4, 24), generator, 1.0, cpu, "t")
    shown = _CountingBar.shown
    assert shown[0] == 0 and shown[-1] == batches, shown
    stale = [pair for pair in itertools.pairwise(shown) if pair[0] >= pair[1]]
    assert not stale, f"a redraw showed a stale count: {shown}"
