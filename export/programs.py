"""The exported programs `Step`, `Complete` and (cvae) `Sample`, around a model's own layers.

Both call the model's nn.RNN/LSTM/GRU, so the ONNX files hold the standard RNN/LSTM/GRU ops (one
node per recurrent step, weights stored once and shared by all 27 unrolled steps of `Complete`)
that every runtime implements natively. The layers are re-instantiated sequence-first: ONNX's
recurrent ops are, and a batch-first call costs two Transposes per step. The contract's
batch-first state is converted once, at the edges of `Step`.

    Complete, stream mode (27 unrolled steps, per-sample known_rows k):

    image[:, 0] ─► RNN ─► fc ─► clip ─► where(t+1 < k, image[:, t+1], pred) ─► RNN ─► ...
                    ▲ state ─────────────────────────────────────────────────────┘

At batch 1 a step's cost is mostly per-node overhead on top of one read of the weights, so each
unrolled step is kept to five nodes after onnxruntime's optimizer (LSTM, MatMul, Add, Clip,
Where): tensors stay sequence-first, and the known rows and their masks are cut once up front.
Window mode re-reads the last 14 rows from zero state at every step, as the course's model does.
`Sample` is `Complete` with the model's sampling head in place of `fc`: each unrolled step turns
its slice of the `noise` input into a drawn row (a flow head integrates its unrolled Euler steps
from temperature * noise; a cvae head decodes z = mu + temperature * sigma * noise). There is no
RandomNormal node: the randomness is an input, so every runtime draws the same sample.
`SampleStep` is one such step with explicit state, as `Step` is for the mean.
Parity with the eager model is checked at export (export.validate), GRU's gate variant included.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from rowgen import contract
from training.model import RowGenerator, State


class _Predictor(nn.Module):
    """Shared by Step and Complete: sequence-first recurrent layers and the clipped head."""

    def __init__(self, model: RowGenerator) -> None:
        super().__init__()
        config = model.config
        self.window_mode = config.mode == "window"
        self.lstm = config.has_cell_state
        self.rnn = type(model.rnn)(contract.IMAGE_SIZE, config.hidden, config.layers)
        self.rnn.load_state_dict(model.rnn.state_dict())
        self.fc = copy.deepcopy(model.fc)

    def zero_state(self, row: torch.Tensor) -> State:
        """Zeros, "top of the image", sized from `row` (B, 28) so the batch stays dynamic.

        Given explicitly rather than as None: the exporter then never has to guess its batch.
        """
        if self.window_mode:
            return row.new_zeros(contract.WINDOW, *row.shape)  # (14, B, 28)
        h = row.new_zeros(self.rnn.num_layers, row.shape[0], self.rnn.hidden_size)  # (L, B, H)
        return (h, h) if self.lstm else h

    def predict(self, out: torch.Tensor) -> torch.Tensor:
        return self.fc(out).clamp(0.0, 1.0)  # (..., 28)

    def step(self, row: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """row (1, B, 28) -> next_row (1, B, 28), new state; sequence-first, as the op is.

        Stream: state is torch's (L, B, H) tensor or (h, c) tuple.
        Window: state is the sequence-first window (14, B, 28) of the rows read so far.
        """
        if self.window_mode:
            window = torch.cat([state[1:], row], 0)  # (14, B, 28)
            out, _ = self.rnn(window)  # zero initial state: the course's model
            return self.predict(out[-1:]), window
        _, state = self.rnn(row, state)
        # Predict from the top layer's new h (1, B, H), not from the sequence output: that one
        # has a direction axis in ONNX, and squeezing it costs a node per step.
        h = state[0] if self.lstm else state  # (L, B, H)
        return self.predict(h if self.rnn.num_layers == 1 else h[-1:]), state


class Step(_Predictor):
    """`step.onnx`: (row, h[, c]) -> (next_row, h_out[, c_out]); window mode (row, window)."""

    def forward(self, row: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.window_mode:
            next_row, window = self.step(row[None], state[0].transpose(0, 1))  # (14, B, 28)
            return next_row[0], window.transpose(0, 1)
        inner = tuple(s.transpose(0, 1) for s in state)  # (B, L, H) -> (L, B, H)
        next_row, new = self.step(row[None], inner if self.lstm else inner[0])
        new = new if self.lstm else (new,)
        return (next_row[0], *(s.transpose(0, 1) for s in new))


class Complete(_Predictor):
    """`complete.onnx`: (image, known_rows) -> completed, the 27 steps unrolled (no Loop/If)."""

    def __init__(self, model: RowGenerator) -> None:
        super().__init__(model)
        self.register_buffer("row_index", torch.arange(contract.IMAGE_SIZE), persistent=False)

    def prompt(self, image: torch.Tensor, known_rows: torch.Tensor) -> tuple[tuple, tuple]:
        """Rows and known-row masks, cut once: 28 x (1, B, 28) and 28 x (1, B, 1)."""
        # Everything per step stays sequence-first (1, B, ...): the recurrent op's own layout, so
        # no Squeeze/Unsqueeze per step, and the known-row masks and rows are cut once up front.
        k = known_rows.clamp(contract.KNOWN_ROWS_MIN, contract.KNOWN_ROWS_MAX)  # (B,)
        rows = image.transpose(0, 1).split(1)  # 28 x (1, B, 28): row t of every image
        given = (self.row_index[:, None, None] < k[None, :, None]).split(1)  # 28 x (1, B, 1)
        return rows, given

    def forward(self, image: torch.Tensor, known_rows: torch.Tensor) -> torch.Tensor:
        rows, given = self.prompt(image, known_rows)
        state = self.zero_state(rows[0][0])
        row = rows[0]  # row 0 is always known
        done = [row]
        for t in range(contract.IMAGE_SIZE - 1):  # the call receiving row t predicts row t + 1
            pred, state = self.step(row, state)
            row = torch.where(given[t + 1], rows[t + 1], pred)  # (1, B, 28)
            done.append(row)
        return torch.cat(done).transpose(0, 1)  # (B, 28, 28)


class _Sampler(_Predictor):
    """Shared by SampleStep and Sample: the recurrent step, then a draw from the sampling head.

    A head that holds a class (sampler.classes > 0) carries `kind` (1, B, C) beside the state:
    after reading a known row it decides it again from the new state, after a drawn row it keeps
    it (one Where on an exact mask, so no runtime can flip the decision)."""

    def __init__(self, model: RowGenerator) -> None:
        super().__init__(model)
        self.sampler = copy.deepcopy(model.sampler)
        self.classes = self.sampler.classes

    def draw(
        self,
        row: torch.Tensor,
        state: State,
        noise: torch.Tensor,
        scale: torch.Tensor,
        kind: torch.Tensor | None = None,
        known: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, State, torch.Tensor | None]:
        """row (1, B, 28), noise (1, B, D), scale (1, B, 1) >= 0, kind (1, B, C) and known
        (1, B, 1) bool (row is a known row) -> drawn row (1, B, 28), state, kind. With no kind
        yet (None), a head that holds a class decides one from this row's state."""
        _, state = self.rnn(row, state)
        h = state[0] if self.lstm else state  # (L, B, H)
        h = h if self.rnn.num_layers == 1 else h[-1:]  # (1, B, H): the top layer
        if self.classes:
            decided = self.sampler.decide(h)
            kind = decided if kind is None else torch.where(known, decided, kind)
        return self.sampler.sample_row(h, row, noise, scale, kind), state, kind


class SampleStep(_Sampler):
    """`sample_step.onnx`: (row, h[, c][, kind, row_known], noise_row, temperature) ->
    (next_row, h_out[, c_out][, kind_out])."""

    def forward(self, row: torch.Tensor, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        count = 2 if self.lstm else 1
        state, rest = inputs[:count], inputs[count:]
        kind = known = None
        if self.classes:
            kind, row_known, *rest = rest
            kind, known = kind[None], (row_known > 0.5)[None, :, None]  # (1, B, C), (1, B, 1)
        noise, temperature = rest
        inner = tuple(s.transpose(0, 1) for s in state)  # (B, L, H) -> (L, B, H)
        scale = temperature.clamp(min=0.0)[None, :, None]  # (1, B, 1); negative acts as 0
        drawn, new, kind = self.draw(
            row[None], inner if self.lstm else inner[0], noise[None], scale, kind, known
        )
        new = new if self.lstm else (new,)
        held = (kind[0],) if kind is not None else ()
        return (drawn[0], *(s.transpose(0, 1) for s in new), *held)


class Sample(_Sampler, Complete):
    """`sample.onnx`: (image, known_rows, noise, temperature) -> completed, 27 steps unrolled."""

    def forward(
        self,
        image: torch.Tensor,
        known_rows: torch.Tensor,
        noise: torch.Tensor,
        temperature: torch.Tensor,
    ) -> torch.Tensor:
        rows, given = self.prompt(image, known_rows)
        draws = noise.transpose(0, 1).split(1)  # 27 x (1, B, D): the draw for row t + 1
        scale = temperature.clamp(min=0.0)[None, :, None]  # (1, B, 1); negative acts as 0
        state = self.zero_state(rows[0][0])
        # Row 0 is always known, so the first step decides the class outright: no zeros to start
        # from (a zeros tensor shaped from the batch made onnxruntime's allocation planner take
        # 10 s to open this file instead of 0.5).
        kind = None
        row = rows[0]
        done = [row]
        for t in range(contract.IMAGE_SIZE - 1):
            drawn, state, kind = self.draw(row, state, draws[t], scale, kind, given[t])
            row = torch.where(given[t + 1], rows[t + 1], drawn)
            done.append(row)
        return torch.cat(done).transpose(0, 1)  # (B, 28, 28)
