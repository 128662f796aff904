"""The row generator: one recurrent network over image rows, for every cell and both modes.

Read an image as 28 rows of 28 pixels, top to bottom. The model sees row t and predicts row t+1:

    rows   r0 ──► r1 ──► r2 ──► ... ──► r26          (input, one row per time step)
            │      │      │              │
    pred   p1     p2     p3     ...     p27          (fc(h_t), a guess of the next row)

`stream` mode carries the recurrent state down the whole image; `window` mode is the course's
model, which re-reads the last 14 rows from zero state for every prediction. The attribute
names `rnn` and `fc` match the course notebook's `Net`, so its state_dict loads as is.

Head "cvae" adds `latent` (LatentHead), a distribution over the next row beside `fc`'s mean;
training.latent explains the design and holds its likelihood and the eager sampler. Head "flow"
adds `flow` (training.flow_head.FlowHead) instead: a rectified-flow decoder whose rows are draws.
"""

from __future__ import annotations

import torch
from torch import nn

from rowgen import contract
from rowgen.config import ModelConfig
from training.flow_head import FlowHead

# (layers, B, H), (h, c) for LSTM; in window-mode export programs, the (14, B, 28) window
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]

_RNN_CLASSES: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
LATENT_WIDTH = 128  # hidden units of the prior, posterior and decoder MLPs (sized for a CPU)
LOG_SCALE_MIN = -7.0  # the decoder's per-pixel logistic scale stays above ~1/4 of a grey level


def _mlp(inputs: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(inputs, LATENT_WIDTH), nn.ReLU(), nn.Linear(LATENT_WIDTH, outputs)
    )


class LatentHead(nn.Module):
    """A conditional VAE step on the recurrent state h_t (the top layer's output).

    prior      p(z | h_t)           = N(mu, sigma)          h_t -> (mu, log_var)
    posterior  q(z | h_t, row_t+1)                           training only
    decoder    p(row_t+1 | h_t, z)  = 28 discretized logistics (mean, log_scale)
    """

    classes = 0  # holds no class: sample_row's `kind` is not read

    def __init__(self, hidden: int, noise_dim: int) -> None:
        super().__init__()
        size = contract.IMAGE_SIZE
        self.prior = _mlp(hidden, 2 * noise_dim)
        self.posterior = _mlp(hidden + size, 2 * noise_dim)
        self.decoder = _mlp(hidden + noise_dim, 2 * size)

    def prior_params(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.prior(h).chunk(2, dim=-1)  # (..., D) each
        return mu, log_var

    def posterior_params(
        self, h: torch.Tensor, row: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.posterior(torch.cat([h, row], dim=-1)).chunk(2, dim=-1)
        return mu, log_var

    def decode(self, h: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_scale) of the next row's pixels, (..., 28) each; mean is unclipped."""
        mean, log_scale = self.decoder(torch.cat([h, z], dim=-1)).chunk(2, dim=-1)
        return mean, log_scale.clamp(min=LOG_SCALE_MIN)

    def sample_row(
        self,
        h: torch.Tensor,
        above: torch.Tensor,
        noise: torch.Tensor,
        temperature: torch.Tensor,
        kind: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One sampled row, clipped to [0, 1]: z = mu + temperature * sigma * noise, decoded.

        h (..., H), noise (..., D), temperature broadcastable to (..., 1), already >= 0. The row
        `above` and `kind` are not read (h summarises the row; this head holds no class): the
        arguments keep one interface for every head.
        """
        mu, log_var = self.prior_params(h)
        z = mu + temperature * torch.exp(0.5 * log_var) * noise
        return self.decode(h, z)[0].clamp(0.0, 1.0)


class RowGenerator(nn.Module):
    """Next-row predictor; `config` says which cell, mode and size."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        size = contract.IMAGE_SIZE
        self.rnn = _RNN_CLASSES[config.cell](size, config.hidden, config.layers, batch_first=True)
        self.fc = nn.Linear(config.hidden, size)
        if config.head == "cvae":
            self.latent = LatentHead(config.hidden, config.noise_dim)
        if config.head == "flow":
            self.flow = FlowHead(
                config.hidden,
                config.flow_width,
                config.flow_steps,
                config.flow_integrator,
                classes=config.flow_classes,
            )

    @property
    def sampler(self) -> LatentHead | FlowHead:
        """The head that draws rows: `sample_row(h, above, noise, temperature, kind)` of either
        sort; `classes` > 0 where it holds a class (`kind`, FlowHead.decide)."""
        return self.flow if self.config.head == "flow" else self.latent

    def init_state(self, batch: int) -> State:
        """Zero state, i.e. "top of the image", in torch's (layers, B, H) layout."""
        p = self.fc.weight
        h = p.new_zeros(self.config.layers, batch, self.config.hidden)
        return (h, h.clone()) if self.config.has_cell_state else h

    def forward(self, rows: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Raw (unclipped) next-row predictions for every input row, and the state after them."""
        out, state = self.rnn(rows, state)  # (B, T, H)
        return self.fc(out), state  # (B, T, 28)

    def predict_window(self, window: torch.Tensor) -> torch.Tensor:
        """The course's `Net.forward`: read (B, 14, 28) from zero state, predict the next row."""
        out, _ = self.rnn(window, None)  # (B, 14, H)
        return self.fc(out[:, -1, :])  # (B, 28)


def clamp_known_rows(known_rows: torch.Tensor) -> torch.Tensor:
    """Values outside 1..27 are clamped into it (the contract's rule, shared by every program)."""
    return known_rows.long().clamp(contract.KNOWN_ROWS_MIN, contract.KNOWN_ROWS_MAX)


@torch.no_grad()
def complete(model: RowGenerator, image: torch.Tensor, known_rows: torch.Tensor) -> torch.Tensor:
    """Eager reference completion: keep rows < known_rows[b], generate the rest, clipped to [0, 1].

    image (B, 28, 28), known_rows (B,) -> completed (B, 28, 28). Every generated row is fed back
    as the next input, exactly as `complete.onnx` does; per-sample prompt lengths may differ.
    """
    n = contract.IMAGE_SIZE
    k = clamp_known_rows(known_rows).to(image.device)[:, None]  # (B, 1)
    row = image[:, 0]  # (B, 28)
    rows = [row]
    if model.config.mode == "window":
        window = image.new_zeros(image.shape[0], contract.WINDOW, n)  # zeros: above the image
    else:
        state = model.init_state(image.shape[0])
    for t in range(n - 1):  # the call that receives row t predicts row t + 1
        if model.config.mode == "window":
            window = torch.cat([window[:, 1:], row[:, None]], dim=1)  # (B, 14, 28)
            pred = model.predict_window(window)
        else:
            out, state = model(row[:, None], state)
            pred = out[:, 0]
        row = torch.where(t + 1 < k, image[:, t + 1], pred.clamp(0.0, 1.0))
        rows.append(row)
    return torch.stack(rows, dim=1)  # (B, 28, 28)


def completion_mse(completed: torch.Tensor, image: torch.Tensor, known_rows: int) -> float:
    """Per-pixel MSE over the generated rows only (rows known_rows..27), the contract's metric."""
    diff = completed[:, known_rows:] - image[:, known_rows:]
    return float(diff.pow(2).mean())
