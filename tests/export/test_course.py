"""`python -m export --from-state-dict`: the course notebook's saved `Net` becomes a bundle.

The state_dicts come from tests.training.test_model.CourseNet, built exactly like the notebook's
`Net` (same attribute names), with random weights. The fast tests cover every wrong file and the
no-data case; the `slow` one exports, scores and serves the real-size Net end to end.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from export import course
from export.__main__ import main
from rowgen import contract, sessions
from rowgen.bundle import open_bundle
from serve.runtime import load_models
from tests.training.test_model import CourseNet


def course_net(hidden: int = 256, seed: int = 0) -> CourseNet:
    torch.manual_seed(seed)
    net = CourseNet()
    if hidden != 256:  # same attribute names and layer types, fewer units
        net.rnn = nn.LSTM(input_size=28, hidden_size=hidden, batch_first=True)
        net.fc = nn.Linear(hidden, 28)
    return net.eval()


def export(tmp_path: Path, source: Path, *flags: str) -> int:
    return main(["--from-state-dict", str(source), "--artifacts", str(tmp_path / "art"), *flags])


def check_bundle_runs_the_net(folder: Path, net: CourseNet) -> None:
    """step.onnx on a window equals the notebook's `net(window)`, clipped as the contract says."""
    bundle = open_bundle(folder)
    assert bundle.config.mode == "window" and bundle.config.cell == "lstm"
    window = torch.rand(5, contract.WINDOW, contract.IMAGE_SIZE)  # (B, 14, 28)
    with torch.no_grad():
        want = net(window).clamp(0, 1).numpy()
    rows = window.numpy()
    # step.onnx appends the given row to its window state: give the rows before it, shifted
    previous = np.concatenate([np.zeros_like(rows[:, :1]), rows[:, :-1]], axis=1)
    step = sessions.open_session(bundle.file(contract.STEP_ONNX))
    row_name, window_name = (s.name for s in contract.step_inputs(bundle.config))
    got = step.run(None, {row_name: rows[:, -1], window_name: previous})[0]
    gap = float(np.abs(got - want).max())
    assert gap <= contract.STEP_TOLERANCE, f"step.onnx next_row vs the notebook's Net: {gap:.2e}"


def test_without_data_nothing_is_scored(tiny_bundles: Path, tmp_path: Path) -> None:
    empty = tmp_path / "no-data"
    empty.mkdir()
    folder = tiny_bundles / "lstm-window"
    metrics, line = course.test_scores(folder, "fashion-mnist", str(empty), None)
    assert metrics == {} and line.startswith("not scored: data directory")


def test_a_whole_pickled_model_is_refused_with_the_fix(tmp_path: Path, capsys) -> None:
    source = tmp_path / "net.pth"
    torch.save(course_net(8), source)  # the notebook's torch.save(net), not its state_dict
    assert export(tmp_path, source) == 2
    err = capsys.readouterr().err
    assert "holds a pickled tests.training.test_model.CourseNet object" in err
    assert "torch.save(net.state_dict(), 'net.pth')" in err and err.count("\n") == 1
    assert not (tmp_path / "art").exists()


def test_another_shape_names_the_keys_and_shapes(tmp_path: Path, capsys) -> None:
    source = tmp_path / "net.pth"
    state = course_net(128).state_dict()
    state["extra.weight"] = torch.zeros(3)
    del state["fc.bias"]
    torch.save(state, source)
    assert export(tmp_path, source) == 2
    err = capsys.readouterr().err
    assert "rnn.weight_ih_l0: file (512, 28), expected (1024, 28)" in err
    assert "fc.weight: file (28, 128), expected (28, 256)" in err
    assert "fc.bias: missing from the file, expected (28,)" in err
    assert "extra.weight: in the file (3,), not in the model" in err
    assert "--cell lstm --mode window --hidden 256" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is not a file saved by torch.save"),
        (b"hello, this is text", "is not a file saved by torch.save"),
        (None, "no file at"),
    ],
)
def test_not_a_torch_file(tmp_path: Path, capsys, content: bytes | None, message: str) -> None:
    source = tmp_path / "net.pth"
    if content is not None:
        source.write_bytes(content)
    assert export(tmp_path, source) == 2
    assert message in capsys.readouterr().err


def test_names_and_a_state_dict_do_not_mix(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["lstm", "--from-state-dict", str(tmp_path / "net.pth")])
    assert stopped.value.code == 2


@pytest.mark.slow  # the export of a window model alone takes ~40 s of CPU, even a tiny one
def test_state_dict_becomes_a_scored_servable_bundle(
    tmp_path: Path, data_dir: Path, capsys
) -> None:
    net = course_net()  # the notebook's Net at its real size, random weights
    source = tmp_path / "net.pth"
    torch.save(net.state_dict(), source)
    flags = ("--name", "course", "--data-dir", str(data_dir), "--limit-test", "300")
    assert export(tmp_path, source, *flags) == 0
    out = capsys.readouterr().out
    assert "test MSE k=7" in out and "scored on 300 fashion-mnist test images" in out
    artifacts = tmp_path / "art"
    bundle = open_bundle(artifacts / "course")
    metrics = bundle.manifest["metrics"]
    assert list(metrics) == [f"test_mse_k{k}" for k in contract.EVAL_KNOWN_ROWS]
    assert all(0 < v < 1 for v in metrics.values())
    assert bundle.manifest["training"]["source"] == "course notebook state_dict"
    check_bundle_runs_the_net(artifacts / "course", net)
    models = load_models(artifacts, "cpu")  # what `make serve` does at start
    assert "course" in models.names
