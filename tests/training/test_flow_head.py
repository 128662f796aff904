"""The flow head's maths: its exact divergence, its likelihood bound, its training loss, and the
images that let it train on its own draws, and the class a head holds."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import jacfwd, vmap

from tests.conftest import tiny_flow_sampler
from training.flow_bits import flow_bits_per_pixel
from training.flow_head import FlowHead
from training.flow_loop import fit_kind_probe, own_draws, train_flow
from training.latent_loop import frozen_states
from training.recipe import FLOW, FLOW_OWN


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


def test_divergence_is_the_jacobians_trace_with_a_skip() -> None:
    torch.manual_seed(0)
    head = FlowHead(8, 16, 3, skip=True)
    y = torch.randn(6, 28)
    cond = head.condition(torch.randn(6, 8), torch.rand(6, 28))
    for t in (torch.tensor(0.0), torch.tensor(0.7), torch.rand(6)):  # one time, or one per row
        jac = vmap(jacfwd(lambda row, c, s: head.velocity(row, s, c)))(y, cond, t.expand(6))
        want = jac.diagonal(dim1=1, dim2=2).sum(-1)
        torch.testing.assert_close(head.divergence(y, t, cond), want, rtol=1e-4, atol=1e-4)


def test_a_skip_head_starts_from_the_row_above() -> None:
    torch.manual_seed(0)
    head = FlowHead(8, 16, 4, skip=True)
    torch.nn.init.zeros_(head.out.weight)
    torch.nn.init.zeros_(head.out.bias)  # the network adds nothing: only the skip's guess is left
    above = torch.rand(5, 28)
    row = head.sample_row(torch.randn(5, 8), above, torch.randn(5, 28), torch.zeros(5, 1))
    torch.testing.assert_close(row, above)  # a fresh guess is the row above itself
    with pytest.raises(ValueError, match="skip needs predicts='row'"):
        FlowHead(8, 16, 4, predicts="velocity", skip=True)


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
    head = tiny_flow_sampler(classes=0).flow.train()
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


def test_own_draws_replace_a_suffix_of_each_image_and_keep_its_top() -> None:
    model = tiny_flow_sampler(classes=0)
    images = torch.rand(40, 28, 28)
    states = frozen_states(model, images)
    for rounds in (1, 2):
        read = own_draws(model, images, states, rounds, seed=3)
        assert read.shape == images.shape and read.min() >= 0 and read.max() <= 1
        same = (read == images).all(-1)  # (N, 28): row kept real
        first = (~same).int().argmax(-1)  # the first drawn row of each image
        assert bool(same[:, 0].all()) and bool((first >= 1).all())
        rows = torch.arange(28)
        assert torch.equal(same, rows < first[:, None]), "rows from the first drawn one on differ"
        assert len(set(first.tolist())) > 5  # the cut falls on many rows, not one
        torch.testing.assert_close(own_draws(model, images, states, rounds, seed=3), read)
    assert torch.equal(own_draws(model, images, states, 0, seed=3), images)


def test_a_flow_recipe_refuses_an_unknown_loss_or_negative_rounds_at_once() -> None:
    with pytest.raises(ValueError, match="weighting in"):
        FLOW.with_overrides(weighting="rows")
    with pytest.raises(ValueError, match="own_draws >= 0"):
        FLOW_OWN.with_overrides(own_draws=-1)


def test_a_head_that_holds_a_class_learns_it_from_labels_and_decides_it_by_its_probe() -> None:
    """Two kinds of image that differ from their first row: the kind probe reads the class from
    the core's state, the head's draws need a class vector, and the class steers them."""
    model = tiny_flow_sampler(classes=2)
    labels = torch.arange(60) % 2
    images = torch.rand(60, 28, 28) * 0.2
    images[labels == 1, :, :14] += 0.8  # kind 1: a bright left half, every row
    fitted = fit_kind_probe(model, images, labels, seed=0)
    assert fitted["kind_probe_accuracy"] > 0.95, fitted
    head = model.flow
    states = frozen_states(model, images)  # (N, 27, H)
    decided = head.decide(states[:, 5])
    assert torch.equal(decided.argmax(-1), labels)
    torch.testing.assert_close(decided.sum(-1), torch.ones(60))
    h, above, noise = states[:4, 5].float(), images[:4, 5], torch.randn(4, 28)
    one = torch.ones(4, 1)
    with pytest.raises(ValueError, match="pass `kind`"):
        head.sample_row(h, above, noise, one)
    with pytest.raises(ValueError, match="trains on labelled rows"):
        train_flow(model, images, FLOW.with_overrides(epochs=1, pairs_per_epoch=64), 0, "t")
    history = train_flow(
        model, images, FLOW.with_overrides(epochs=1, pairs_per_epoch=512), 0, "t", None, labels
    )
    assert history[0]["flow_loss"] > 0
    eye = torch.eye(2)
    with torch.no_grad():
        first, second = (head.sample_row(h, above, noise, one, eye[c].expand(4, 2)) for c in (0, 1))
    assert (first - second).abs().max() > 1e-3, "the class vector does not reach the draw"
