"""Sampled completions: the per-row latent variable's likelihood bound and the eager sampler.

The eager sampler (`sample`) serves both sampling heads; the shipped one is the flow head
(training.flow_head), whose rows are draws rather than a decoder's mean. The cvae head below
stays selectable (`--head cvae`) as the measured baseline in docs/sampling.md.

Why a conditional VAE step per row (training.model.LatentHead), of the three candidates:
- a per-pixel discretized distribution sampled pixel by pixel gives speckle unless pixels are
  ordered within a row too (28 more sequential steps, 28x the graph);
- a mixture density over whole rows needs a discrete component choice, and a choice taken
  from nearly tied probabilities can flip between runtimes (float rounding), changing the row;
- a latent z per row has neither problem: one continuous draw z = mu + T * sigma * noise per
  row, decoded by an MLP into the whole row at once, so the row is coherent (all its variation
  comes from z) and a tiny difference in z moves the row by a tiny amount. Temperature 0 gives
  z = the prior's mean: deterministic, with no discrete choice to flip.

The sample shown is the decoder's mean for the drawn z (clipped to [0, 1]); the decoder's
per-pixel logistic scale only models the residual, for the likelihood. That row is fed back as
the next input, exactly as the mean path feeds back its prediction.

Training (training.latent_loop): the evidence lower bound of each real next row given the
teacher-forced state h_t, in nats per pixel, with 8-bit pixels as discretized logistics.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rowgen import contract
from training.model import RowGenerator, clamp_known_rows

HALF_LEVEL = 0.5 / 255.0  # half an 8-bit grey level: pixels are k / 255


def discretized_logistic_nll(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """-log P(x) in nats for pixels x in {0, 1/255, ..., 1}, elementwise.

    P is a logistic(mean, exp(log_scale)) integrated over x's grey level; level 0 takes the
    whole lower tail and level 255 the upper one (so the 256 probabilities sum to 1).
    """
    inv_scale = torch.exp(-log_scale)
    centred = x - mean
    upper = inv_scale * (centred + HALF_LEVEL)
    lower = inv_scale * (centred - HALF_LEVEL)
    log_below_upper = F.logsigmoid(upper)  # log P(X < x + half): the black level
    log_above_lower = F.logsigmoid(-lower)  # log P(X > x - half): the white level
    delta = torch.sigmoid(upper) - torch.sigmoid(lower)
    # Far in a tail the difference underflows; there density times bin width is exact enough.
    middle = inv_scale * centred
    log_density = middle - log_scale - 2.0 * F.softplus(middle) - math.log(255.0)
    log_mid = torch.where(delta > 1e-5, torch.log(delta.clamp(min=1e-12)), log_density)
    log_p = torch.where(
        x < HALF_LEVEL, log_below_upper, torch.where(x > 1.0 - HALF_LEVEL, log_above_lower, log_mid)
    )
    return -log_p


def gaussian_kl(
    mu_q: torch.Tensor, log_var_q: torch.Tensor, mu_p: torch.Tensor, log_var_p: torch.Tensor
) -> torch.Tensor:
    """KL(N(mu_q, var_q) || N(mu_p, var_p)) per dimension (last axis), nats."""
    ratio = torch.exp(log_var_q - log_var_p)
    term = ratio + (mu_q - mu_p).pow(2) / torch.exp(log_var_p) - 1.0 - (log_var_q - log_var_p)
    return 0.5 * term


def row_bound(
    model: RowGenerator, h: torch.Tensor, next_rows: torch.Tensor, sample: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstruction NLL per row (B, T) and KL per row and latent dimension (B, T, D), nats:
    -ELBO = rec + kl.sum(-1).

    h (B, T, H) the states that read rows 0..T-1, next_rows (B, T, 28) the rows they predict.
    sample=False uses the posterior mean (no reparameterisation noise).
    """
    head = model.latent
    mu_q, log_var_q = head.posterior_params(h, next_rows)
    mu_p, log_var_p = head.prior_params(h)
    z = mu_q
    if sample:
        z = mu_q + torch.exp(0.5 * log_var_q) * torch.randn_like(mu_q)
    mean, log_scale = head.decode(h, z)
    rec = discretized_logistic_nll(next_rows, mean, log_scale).sum(-1)  # (B, T)
    return rec, gaussian_kl(mu_q, log_var_q, mu_p, log_var_p)


def top_states(model: RowGenerator, rows: torch.Tensor) -> torch.Tensor:
    """The top layer's output after each row, (B, T, H): the h_t every head reads."""
    out, _ = model.rnn(rows)
    return out


@torch.no_grad()
def bits_per_pixel(model: RowGenerator, images: torch.Tensor, known_rows: int) -> float:
    """Test bound: -ELBO of rows known_rows..27 given the rows above, bits per pixel.

    One posterior draw per row (an unbiased estimate of the bound); images (N, 28, 28).
    """
    h = top_states(model, images[:, :-1])  # (N, 27, H): h_t predicts row t + 1
    rec, kl = row_bound(model, h, images[:, 1:])
    per_row = (rec + kl.sum(-1))[:, known_rows - 1 :]  # rows known_rows..27
    return float(per_row.mean()) / contract.IMAGE_SIZE / math.log(2.0)


def sample_temperature(temperature: torch.Tensor) -> torch.Tensor:
    """The contract's rule: negative temperatures act as 0 (deterministic)."""
    return temperature.float().clamp(min=0.0)


@torch.no_grad()
def sample(
    model: RowGenerator,
    image: torch.Tensor,
    known_rows: torch.Tensor,
    noise: torch.Tensor,
    temperature: torch.Tensor,
) -> torch.Tensor:
    """Eager reference of `sample.onnx`: image (B, 28, 28), known_rows (B,), noise (B, 27, D),
    temperature (B,) -> completed (B, 28, 28). Row t + 1 uses noise[:, t]; known rows are copied.
    A head with classes decides its class vector from the state after each known row, so the
    one after the last known row is held for every drawn row.
    """
    k = clamp_known_rows(known_rows).to(image.device)[:, None]  # (B, 1)
    scale = sample_temperature(temperature)[:, None]  # (B, 1)
    state = model.init_state(image.shape[0])
    sampler = model.sampler
    kind = image.new_zeros(image.shape[0], sampler.classes) if sampler.classes else None
    row = image[:, 0]
    rows = [row]
    for t in range(contract.IMAGE_SIZE - 1):
        out, state = model.rnn(row[:, None], state)  # (B, 1, H)
        if kind is not None:  # row t was known: decide again
            kind = torch.where(t < k, sampler.decide(out[:, 0]), kind)
        drawn = sampler.sample_row(out[:, 0], row, noise[:, t], scale, kind)  # (B, 28)
        row = torch.where(t + 1 < k, image[:, t + 1], drawn)
        rows.append(row)
    return torch.stack(rows, dim=1)  # (B, 28, 28)
