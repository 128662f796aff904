"""The row generator: state handling per cell, the course's Net, the completion rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from rowgen.config import ModelConfig
from tests.conftest import tiny_model
from training.checkpoint import load_course_state_dict
from training.model import RowGenerator, complete


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_stepping_with_carried_state_equals_full_sequence(cell: str, layers: int) -> None:
    model = tiny_model(cell, hidden=16, layers=layers)
    rows = torch.rand(5, 28, 28)
    full, full_state = model(rows)
    state = model.init_state(5)
    steps = []
    for t in range(28):
        out, state = model(rows[:, t : t + 1], state)
        steps.append(out)
    stepped = torch.cat(steps, 1)
    assert (stepped - full).abs().max() < 1e-5, "row-by-row output differs from full sequence"
    for a, b in zip(
        state if isinstance(state, tuple) else (state,),
        full_state if isinstance(full_state, tuple) else (full_state,),
        strict=True,
    ):
        assert (a - b).abs().max() < 1e-5, "carried state differs from full-sequence state"


class CourseNet(nn.Module):
    """The course notebook's model, verbatim in structure."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(input_size=28, hidden_size=256, batch_first=True)
        self.fc = nn.Linear(256, 28)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y_rnn, (h, c) = self.rnn(x, None)  # noqa: RUF059 (the course's line, verbatim)
        return self.fc(y_rnn[:, -1, :])


def test_window_model_equals_the_course_net(tmp_path: Path) -> None:
    torch.manual_seed(3)
    net = CourseNet().eval()
    path = tmp_path / "course.pth"
    torch.save(net.state_dict(), path)
    model = RowGenerator(ModelConfig("lstm", "window", 256, 1)).eval()
    load_course_state_dict(model, path)
    x = torch.rand(7, 14, 28)
    with torch.no_grad():
        assert torch.equal(model.predict_window(x), net(x))


def test_course_state_dict_of_wrong_shape_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "course.pth"
    torch.save(CourseNet().state_dict(), path)
    model = RowGenerator(ModelConfig("gru", "window", 256, 1))
    with pytest.raises(ValueError, match="--cell lstm --mode window --hidden 256"):
        load_course_state_dict(model, path)


@pytest.mark.parametrize("mode", ["stream", "window"])
def test_complete_copies_known_rows_and_clips(mode: str) -> None:
    model = tiny_model("gru", mode=mode)
    image = torch.rand(4, 28, 28)
    known = torch.tensor([0, 5, 14, 99])  # clamped to 1, 5, 14, 27
    done = complete(model, image, known)
    for b, k in enumerate([1, 5, 14, 27]):
        assert torch.equal(done[b, :k], image[b, :k])
    assert float(done.min()) >= 0.0 and float(done.max()) <= 1.0


def test_complete_feeds_back_its_own_rows() -> None:
    model = tiny_model("lstm")
    image = torch.rand(2, 28, 28)
    known = torch.tensor([10, 10])
    done = complete(model, image, known)
    changed = image.clone()
    changed[:, 10:] = 0.5  # rows below the prompt must not influence the completion
    assert torch.equal(complete(model, changed, known), done)
