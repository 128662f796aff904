"""Bits per pixel of a flow head: a dequantization bound on its probability-flow ODE's density.

The head's field v defines an ODE dy/ds = v(y, s, h) whose flow carries N(0, I) at s = 0 to a
density p_1 at s = 1, with log p_1(y_1) = log N(y_0) - integral_0^1 div v(y_s, s) ds along the
path through y_1 (the instantaneous change of variables). The path is solved backwards from a
real row with SOLVER_STEPS midpoint-time Euler steps and the divergence taken exactly (the
28 x 28 Jacobian's trace, FlowHead.divergence). With uniform dequantization inside each of the
256 grey levels, -log2 P(row) <= E_u[-log2 p_x(x + u)] + 8 bits per pixel (Jensen), x = (y + 1) / 2.
The solver's error makes the figure an estimate of that bound, not a guaranteed one, and it
describes the continuous-time model, of which the shipped few-step sampler is a discretisation.
"""

from __future__ import annotations

import math

import torch

from rowgen import contract
from training.latent import top_states
from training.model import RowGenerator

SOLVER_STEPS = 32


def _row_log_density(head, cond: torch.Tensor, y1: torch.Tensor) -> torch.Tensor:
    """log p_1(y1) in y-space, nats per row: cond (N, W), y1 (N, 28) -> (N,)."""
    y = y1
    log_det = torch.zeros(len(y1))
    dt = 1.0 / SOLVER_STEPS
    for i in reversed(range(SOLVER_STEPS)):
        s = torch.full((), (i + 0.5) * dt)
        log_det += dt * head.divergence(y, s, cond)
        y = y - dt * head.velocity(y, s, cond)
    size = contract.IMAGE_SIZE
    log_normal = -0.5 * (y.pow(2).sum(-1) + size * math.log(2 * math.pi))
    return log_normal - log_det


@torch.no_grad()
def flow_bits_per_pixel(
    model: RowGenerator, images: torch.Tensor, known_rows: int, seed: int = 0
) -> float:
    """Estimated bound on -log2 P of rows known_rows..27 given the rows above, bits per pixel.

    images (N, 28, 28) real test images; one dequantization draw per pixel (seeded). A head that
    holds a class scores every row given the class it decides after the prompt, as it samples.
    """
    head = model.flow.eval()
    h = top_states(model, images[:, :-1])[:, known_rows - 1 :]  # (N, R, H): h_t
    above = images[:, known_rows - 1 : -1]  # (N, R, 28): row t
    rows = images[:, known_rows:]  # (N, R, 28): row t + 1
    size = contract.IMAGE_SIZE
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand(rows.shape, generator=generator)
    x = (torch.round(rows * 255.0) + u) / 256.0  # a point inside each pixel's grey level
    kind = head.decide(h[:, :1]) if head.classes else None  # (N, 1, C): held from the prompt
    cond = head.condition(h, above, kind).flatten(0, 1)
    y1 = 2.0 * x - 1.0 - head.centre(h)  # a shift: no change of density
    log_p_y = _row_log_density(head, cond, y1.flatten(0, 1))
    log_p_x = log_p_y + size * math.log(2.0)  # y = 2 x - 1 stretches every pixel by 2
    return float(-log_p_x.mean()) / size / math.log(2.0) + 8.0
