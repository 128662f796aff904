"""The two exported programs, `Step` and `Complete`, as plain tensor math over a trained model.

The recurrent cells are written out with MatMul/Sigmoid/Tanh instead of exporting nn.LSTM/GRU
ops, so that (a) every exporter and runtime sees the same simple ops (no GRU
`linear_before_reset` ambiguity, runs in onnxruntime-web), (b) the state is batch-first as the
contract wants, with no transposes, and (c) the weights are single initializers shared by the 27
unrolled steps of `Complete` instead of being re-folded per step. Parity with eager nn.LSTM/GRU
is checked at export (export.validate).

Gate layouts follow torch: LSTM rows of W are [i, f, g, o], GRU [r, z, n].
"""

from __future__ import annotations

import torch
from torch import nn

from rowgen import contract
from training.model import RowGenerator


class CellStack(nn.Module):
    """The model's recurrent layers as explicit math; state is (B, layers, H)."""

    def __init__(self, model: RowGenerator) -> None:
        super().__init__()
        self.kind = model.config.cell
        self.layers, self.hidden = model.config.layers, model.config.hidden
        rnn = model.rnn
        for layer in range(self.layers):
            w_ih = getattr(rnn, f"weight_ih_l{layer}").detach()  # (G*H, in)
            w_hh = getattr(rnn, f"weight_hh_l{layer}").detach()  # (G*H, H)
            b_ih = getattr(rnn, f"bias_ih_l{layer}").detach()
            b_hh = getattr(rnn, f"bias_hh_l{layer}").detach()
            if self.kind == "gru":  # n-gate needs W_hn h + b_hn apart: r multiplies it
                self.register_buffer(f"w_ih{layer}", w_ih.t().contiguous())  # (in, 3H)
                self.register_buffer(f"w_hh{layer}", w_hh.t().contiguous())  # (H, 3H)
                self.register_buffer(f"b_ih{layer}", b_ih.clone())
                self.register_buffer(f"b_hh{layer}", b_hh.clone())
            else:  # one MatMul on [x, h]: fewer ops per unrolled step
                self.register_buffer(f"w{layer}", torch.cat([w_ih, w_hh], 1).t().contiguous())
                self.register_buffer(f"wx{layer}", w_ih.t().contiguous())  # zero-state steps
                self.register_buffer(f"b{layer}", (b_ih + b_hh).clone())

    def forward(
        self, x: torch.Tensor, h: torch.Tensor | None, c: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """x (B, 28), h/c (B, L, H) or None for zero state -> top output (B, H), h_out, c_out.

        Gates are cut with `split(H)` (one ONNX Split node; `chunk` exports a Shape/Div/Slice
        chain per gate), and a zero state skips the h-side math: the window model starts every
        one of its 378 unrolled cell steps per completion from zeros.
        """
        hs, cs = [], []
        size = self.hidden
        for layer in range(self.layers):
            hl = None if h is None else h[:, layer]  # (B, H)
            if self.kind == "gru":
                gi = x @ getattr(self, f"w_ih{layer}") + getattr(self, f"b_ih{layer}")  # (B, 3H)
                gh = getattr(self, f"b_hh{layer}")  # h = 0: W_hh h vanishes
                if hl is not None:
                    gh = hl @ getattr(self, f"w_hh{layer}") + gh  # (B, 3H)
                i_r, i_z, i_n = gi.split(size, dim=1)
                h_r, h_z, h_n = gh.split(size, dim=-1)
                r = torch.sigmoid(i_r + h_r)
                z = torch.sigmoid(i_z + h_z)
                n = torch.tanh(i_n + r * h_n)
                x = n - z * n if hl is None else n + z * (hl - n)  # (1 - z) * n + z * h
            else:
                if hl is None:
                    pre = x @ getattr(self, f"wx{layer}") + getattr(self, f"b{layer}")  # (B, G*H)
                else:
                    w = getattr(self, f"w{layer}")  # (in + H, G*H)
                    pre = torch.cat([x, hl], 1) @ w + getattr(self, f"b{layer}")
                if self.kind == "rnn":
                    x = torch.tanh(pre)  # (B, H)
                else:
                    i, f, g, o = pre.split(size, dim=1)  # (B, H) each
                    cl = torch.sigmoid(i) * torch.tanh(g)
                    if c is not None:
                        cl = cl + torch.sigmoid(f) * c[:, layer]
                    x = torch.sigmoid(o) * torch.tanh(cl)
                    cs.append(cl)
            hs.append(x)
        return x, torch.stack(hs, 1), torch.stack(cs, 1) if cs else None


class _Predictor(nn.Module):
    """Shared by Step and Complete: the cells plus the clipped linear head."""

    def __init__(self, model: RowGenerator) -> None:
        super().__init__()
        self.mode = model.config.mode
        self.lstm = model.config.has_cell_state
        self.hidden, self.layers = model.config.hidden, model.config.layers
        self.cells = CellStack(model)
        self.register_buffer("w_fc", model.fc.weight.detach().t().contiguous())  # (H, 28)
        self.register_buffer("b_fc", model.fc.bias.detach().clone())

    def head(self, out: torch.Tensor) -> torch.Tensor:
        return (out @ self.w_fc + self.b_fc).clamp(0.0, 1.0)  # (B, 28)

    def step(self, row: torch.Tensor, state: list[torch.Tensor]) -> tuple[torch.Tensor, list]:
        """Contract step: row (B, 28) + state -> next_row (B, 28) + new state."""
        if self.mode == "window":
            window = torch.cat([state[0][:, 1:], row[:, None]], 1)  # (B, 14, 28)
            h = c = None  # the course: every window is read from zero state
            for t in range(contract.WINDOW):
                out, h, c = self.cells(window[:, t], h, c)
            return self.head(out), [window]
        out, h, c = self.cells(row, *state)
        return self.head(out), [h, c] if self.lstm else [h]

    def zero_state(self, like: torch.Tensor) -> list[torch.Tensor]:
        b = like.shape[0]
        if self.mode == "window":
            return [like.new_zeros(b, contract.WINDOW, contract.IMAGE_SIZE)]
        h = like.new_zeros(b, self.layers, self.hidden)
        return [h, h] if self.lstm else [h]


class Step(_Predictor):
    """`step.onnx`: (row, h[, c]) -> (next_row, h_out[, c_out]); window mode (row, window)."""

    def forward(self, row: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        next_row, new_state = self.step(row, list(state))
        return (next_row, *new_state)


class Complete(_Predictor):
    """`complete.onnx`: (image, known_rows) -> completed, the 27 steps unrolled (no Loop/If)."""

    def forward(self, image: torch.Tensor, known_rows: torch.Tensor) -> torch.Tensor:
        k = known_rows.clamp(contract.KNOWN_ROWS_MIN, contract.KNOWN_ROWS_MAX)[:, None]  # (B, 1)
        state = self.zero_state(image)
        row = image[:, 0]  # (B, 28): row 0 is always known
        rows = [row]
        for t in range(contract.IMAGE_SIZE - 1):  # the call receiving row t predicts row t + 1
            pred, state = self.step(row, state)
            row = torch.where(k > t + 1, image[:, t + 1], pred)
            rows.append(row)
        return torch.stack(rows, 1)  # (B, 28, 28)
