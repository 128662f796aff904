"""The flow head's maths: its exact divergence, its likelihood bound, and its training loss."""

from __future__ import annotations

import math

import torch
from torch.func import jacfwd, vmap

from tests.conftest import tiny_flow_sampler
from training.flow_bits import flow_bits_per_pixel


def test_divergence_is_the_jacobians_trace_for_both_parameterisations() -> None:
    head = tiny_flow_sampler().flow
    y, cond = torch.randn(6, 28), torch.randn(6, 16)
    for predicts in ("row", "velocity"):
        head.predicts = predicts
        for s in (0.0, 0.4, 0.99):
            t = torch.tensor(s)
            jac = vmap(jacfwd(lambda row, c, t=t: head.velocity(row, t, c)))(y, cond)
            want = jac.diagonal(dim1=1, dim2=2).sum(-1)
            torch.testing.assert_close(head.divergence(y, t, cond), want, rtol=1e-4, atol=1e-4)


def test_a_still_field_scores_rows_under_the_standard_normal() -> None:
    model = tiny_flow_sampler()
    head = model.flow
    head.predicts = "velocity"
    torch.nn.init.zeros_(head.out.weight)
    torch.nn.init.zeros_(head.out.bias)  # v = 0: the ODE leaves every row where it is
    images = torch.full((3, 28, 28), 100 / 255)
    got = flow_bits_per_pixel(model, images, 20)
    # Every pixel of 100/255 sits in grey level 100 of 256; the draw inside it moves y by < 1%.
    y = 2 * (100.5 / 256) - 1
    nats = 0.5 * (y * y + math.log(2 * math.pi)) - math.log(2.0)  # per pixel, x-space
    assert abs(got - (nats / math.log(2.0) + 8.0)) < 0.01, got


def test_the_loss_falls_when_the_head_learns_one_row() -> None:
    torch.manual_seed(0)
    head = tiny_flow_sampler().flow.train()
    h, above = torch.randn(64, 8), torch.rand(64, 28)
    rows = torch.linspace(0, 1, 28).expand(64, 28)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    first = None
    for _ in range(150):
        loss = head.loss(h, above, rows).mean()
        first = float(loss.detach()) if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(loss.detach()) < 0.5 * first, (first, float(loss.detach()))
