"""The rollout stage: the energy score, the completions it scores, and that training lowers it."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_flow_sampler
from training.latent import sample, top_states
from training.recipe import FLOW_ROLLOUT
from training.rollout_loop import (
    chain_gain,
    class_probs,
    energy_score,
    fit_window_probe,
    prompt_kind,
    read_states,
    rollout,
    row_draws,
    scored,
    train_rollout,
)


def test_the_energy_score_prefers_draws_from_the_real_rows_distribution() -> None:
    torch.manual_seed(0)
    real = torch.randn(4000, 6)
    right = torch.randn(8, 4000, 6)  # draws from Y's own distribution
    narrow = 0.3 * torch.randn(8, 4000, 6)  # the mean's neighbourhood only: too sure
    wide = 2.0 * torch.randn(8, 4000, 6)
    shifted = right + 0.5
    scores = {
        n: float(energy_score(d, real)[0].mean())
        for n, d in {"right": right, "narrow": narrow, "wide": wide, "shifted": shifted}.items()
    }
    assert scores["right"] < min(scores["narrow"], scores["wide"], scores["shifted"]), scores


def test_the_energy_scores_terms_are_the_mean_distances() -> None:
    draws = torch.tensor([[[0.0, 0.0]], [[3.0, 4.0]], [[0.0, 4.0]]])  # 3 draws of one prompt
    real = torch.tensor([[0.0, 0.0]])
    score, fit, spread = energy_score(draws, real)
    # (the norms are smoothed by 1e-8 under the root, so a zero distance reads 1e-4)
    torch.testing.assert_close(fit, torch.tensor([(0 + 5 + 4) / 3]), atol=1e-4, rtol=0)
    torch.testing.assert_close(spread, torch.tensor([(5 + 4 + 3) / 3]), atol=1e-4, rtol=0)
    torch.testing.assert_close(score, fit - spread / 2)
    with pytest.raises(ValueError, match="at least 2 draws"):
        energy_score(draws[:1], real)


def test_the_scored_vector_holds_the_rows_and_their_steps_from_the_row_above() -> None:
    rows = torch.rand(3, 2, 5, 28)  # (M, B, L, 28)
    above = torch.rand(2, 28)
    assert torch.equal(scored(rows, above, 0.0), rows.flatten(-2))
    both = scored(rows, above, 2.0)
    assert both.shape == (3, 2, 2 * 5 * 28)
    steps = both[..., 5 * 28 :].unflatten(-1, (5, 28))
    torch.testing.assert_close(steps[..., 0, :], 2.0 * (rows[..., 0, :] - above))
    torch.testing.assert_close(steps[..., 1:, :], 2.0 * rows.diff(dim=-2))


@pytest.mark.parametrize("classes", [0, 3])
def test_a_rollout_is_the_sampled_completion_given_the_same_noise(classes: int) -> None:
    """As sample.onnx draws it; a head that holds a class holds the one its prompt decides."""
    model = tiny_flow_sampler(classes=classes)
    images = torch.rand(3, 28, 28)
    k, window, draws = 9, 6, 2
    kind = prompt_kind(model, images[:, :k])
    assert (kind is None) == (not classes)
    drawn = rollout(
        model, images[:, :k], window, draws, torch.Generator().manual_seed(5), None, kind
    )
    assert drawn.shape == (draws, 3, window, 28)
    # The same noise, in the order rollout takes it: one (draws * B, 28) block per row.
    generator = torch.Generator().manual_seed(5)
    blocks = torch.stack([torch.randn(draws * 3, 28, generator=generator) for _ in range(window)])
    for m in range(draws):
        noise = torch.zeros(3, 27, 28)
        noise[:, k - 1 : k - 1 + window] = blocks[:, m * 3 : (m + 1) * 3].transpose(0, 1)
        with torch.no_grad():
            want = sample(model, images, torch.full((3,), k), noise, torch.ones(3))
        torch.testing.assert_close(drawn[m].detach(), want[:, k : k + window])


def test_a_nudged_rollout_adds_draw_zero_of_the_prompt_with_its_last_row_moved() -> None:
    model = tiny_flow_sampler(classes=0)
    images = torch.rand(3, 28, 28)
    k, window, draws = 9, 6, 2
    nudge = 0.01 * torch.randn(3, 28)
    both = rollout(model, images[:, :k], window, draws, torch.Generator().manual_seed(5), nudge)
    plain = rollout(model, images[:, :k], window, draws, torch.Generator().manual_seed(5))
    assert both.shape == (draws + 1, 3, window, 28)
    torch.testing.assert_close(both[:draws], plain)  # the draws take the same noise
    moved = images[:, :k].clone()
    moved[:, -1] += nudge
    again = rollout(model, moved, window, draws, torch.Generator().manual_seed(5))
    torch.testing.assert_close(both[draws], again[0])
    gain = chain_gain(both[0], both[draws], nudge)
    want = (again[0] - plain[0]).flatten(1).norm(dim=1) / nudge.norm(dim=1)
    torch.testing.assert_close(gain, want)


def test_training_for_steadiness_lowers_the_chain_gain() -> None:
    images = torch.rand(8, 28, 28)
    nudge = 1e-3 * torch.nn.functional.normalize(torch.randn(8, 28), dim=1)

    def gain(model: torch.nn.Module) -> float:
        with torch.no_grad():
            drawn = rollout(model, images[:, :10], 8, 2, torch.Generator().manual_seed(3), nudge)
        return float(chain_gain(drawn[0], drawn[-1], nudge).pow(2).mean())

    recipe = FLOW_ROLLOUT.with_overrides(
        epochs=30, prompts=8, prompts_per_epoch=8, window=8, known_rows=(10, 10), lr=1e-2,
        flow_weight=0.0, rows=0.0,
    )  # fmt: skip
    gains = {}
    for steadiness in (0.0, 300.0):
        model = tiny_flow_sampler(steps=2, classes=0)
        history = train_rollout(
            model, images, recipe.with_overrides(steadiness=steadiness), seed=0, name="tiny"
        )
        assert ("squared_gain" in history[0]) == bool(steadiness)
        gains[steadiness] = gain(model)
    assert gains[300.0] < 0.5 * gains[0.0], gains


def test_the_score_reaches_rows_drawn_before_through_the_rows_fed_back() -> None:
    model = tiny_flow_sampler(classes=0)
    fed: list[torch.Tensor] = []

    def keep(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        if args[0].requires_grad:  # a drawn row read back, not the prompt
            args[0].retain_grad()
            fed.append(args[0])

    handle = model.rnn.register_forward_pre_hook(keep)
    drawn = rollout(model, torch.rand(2, 5, 28), 4, 2, torch.Generator().manual_seed(0))
    handle.remove()
    drawn[:, :, -1].sum().backward()  # the last row alone
    assert len(fed) == 3  # rows 1-3 of the window were read back
    assert all(float(row.grad.abs().sum()) > 0 for row in fed)


def test_one_row_draws_are_sampled_rows_given_the_real_rows_above() -> None:
    model = tiny_flow_sampler(classes=0)
    images = torch.rand(3, 28, 28)
    k, window, draws = 9, 4, 2
    with torch.no_grad():
        h = top_states(model, images[:, :-1])
        rows = slice(k - 1, k - 1 + window)
        drawn = row_draws(
            model.flow, h[:, rows], images[:, rows], draws, torch.Generator().manual_seed(4)
        )
    assert drawn.shape == (draws, 3, window, 28)
    noise = torch.randn(draws, 3, window, 28, generator=torch.Generator().manual_seed(4))
    for m in range(draws):
        for j in range(window):
            # Row k + j completed from its k + j real rows above, with that draw's noise.
            full = torch.zeros(3, 27, 28)
            full[:, k + j - 1] = noise[m, :, j]
            with torch.no_grad():
                want = sample(model, images, torch.full((3,), k + j), full, torch.ones(3))
            torch.testing.assert_close(drawn[m, :, j], want[:, k + j], atol=1e-5, rtol=0)


def test_training_with_the_one_row_score_lowers_it() -> None:
    # Every image repeats one random row: given the real row above, the next row is that row.
    images = torch.rand(8, 1, 28).expand(8, 28, 28).contiguous()
    k, window = 10, 8

    def row_score(model: torch.nn.Module) -> float:
        with torch.no_grad():
            h = top_states(model, images[:, :-1])
            rows = slice(k - 1, k - 1 + window)
            drawn = row_draws(model.flow, h[:, rows], images[:, rows], 8, torch.Generator())
        real = images[:, k : k + window].flatten(0, 1)
        return float(energy_score(drawn.flatten(1, 2), real)[0].mean())

    recipe = FLOW_ROLLOUT.with_overrides(
        epochs=30, prompts=8, prompts_per_epoch=8, window=window, known_rows=(k, k), lr=1e-2,
        flow_weight=0.0, rows=0.0,
    )  # fmt: skip
    scores = {}
    for weight in (0.0, 30.0):
        model = tiny_flow_sampler(steps=2, classes=0)
        torch.manual_seed(0)
        history = train_rollout(model, images, recipe.with_overrides(rows=weight), 0, "tiny")
        assert ("row_score" in history[0]) == bool(weight)
        torch.manual_seed(1)
        scores[weight] = row_score(model)
    assert scores[30.0] < 0.9 * scores[0.0], scores


@pytest.mark.parametrize("classes", [0, 2])
def test_training_on_rollouts_lowers_the_energy_score(classes: int) -> None:
    """Also for a head that holds a class: it draws with the one its prompt decides, and its
    flow loss reads the labels (needed: refused without them)."""
    model = tiny_flow_sampler(steps=2, classes=classes)
    labels = torch.tensor([0, 1]) if classes else None
    # A world of two images, a dark top over a left half and a light top over a right half:
    # each prompt has one right completion, and the score's least value is 0.
    images = torch.zeros(2, 28, 28)
    images[0, 14:, :14] = 1.0
    images[1, :14] = 1.0
    images[1, 14:, 14:] = 1.0

    def score() -> float:
        with torch.no_grad():
            kind = prompt_kind(model, images[:, :14])
            drawn = rollout(
                model, images[:, :14], 6, 16, torch.Generator().manual_seed(2), None, kind
            )
        return float(energy_score(drawn.flatten(-2), images[:, 14:20].flatten(-2))[0].mean())

    recipe = FLOW_ROLLOUT.with_overrides(
        epochs=80, prompts=2, prompts_per_epoch=2, window=6, known_rows=(14, 14), lr=1e-2,
        flow_weight=0.1 if classes else 0.0, rows=0.0,
    )  # fmt: skip
    before = score()
    if classes:
        with pytest.raises(ValueError, match="trains on labelled rows"):
            train_rollout(model, images, recipe, seed=0, name="tiny")
    history = train_rollout(model, images, recipe, seed=0, name="tiny", labels=labels)
    assert len(history) == 80 and {"energy_score", "fit", "spread"} <= set(history[0])
    assert score() < 0.1 * before, (before, score())
    assert all(p.requires_grad for p in model.rnn.parameters())  # unfrozen again


def test_a_rollout_recipe_refuses_what_it_cannot_score_at_once() -> None:
    for bad in (
        {"draws": 1}, {"window": 0}, {"known_rows": (0, 9)}, {"known_rows": (9, 28)},
        {"steadiness": -1.0}, {"nudge": 0.0}, {"rows": -1.0}, {"state": -1.0}, {"classes": -1.0},
    ):  # fmt: skip
        with pytest.raises(ValueError, match="rollout recipe"):
            FLOW_ROLLOUT.with_overrides(**bad)


def test_read_states_is_the_core_reading_the_prompt_then_each_draw() -> None:
    model = tiny_flow_sampler()
    prompts, drawn = torch.rand(3, 9, 28), torch.rand(2, 3, 5, 28)
    read = read_states(model, prompts, drawn)
    assert read.shape == (2, 3, model.config.hidden)
    for m in range(2):
        with torch.no_grad():
            out, _ = model.rnn(torch.cat([prompts, drawn[m]], 1))
        torch.testing.assert_close(read[m], out[:, -1])


def two_kinds(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of two classes, told apart above row 14 by row 13 alone (0.4 or 0.6 grey) and
    below it plainly: class 0 dark, class 1 light."""
    images = torch.full((n, 28, 28), 0.5)
    labels = torch.arange(n) % 2
    images[:, 13] = 0.4 + 0.2 * labels[:, None]
    images[labels == 1, 14:] = 1.0
    images[labels == 0, 14:] = 0.0
    return images, labels


def test_the_window_probe_reads_the_class_from_the_core_after_the_rows() -> None:
    model = tiny_flow_sampler()
    images, labels = two_kinds(40)
    probe = fit_window_probe(model, images, labels, 18, torch.Generator().manual_seed(0))
    with torch.no_grad():
        out, _ = model.rnn(images)
    assert torch.equal(probe.predict(out[:, 20]), labels)
    probs = class_probs(probe, out[:, 20])
    torch.testing.assert_close(probs.sum(-1), torch.ones(40))
    assert not any(p.requires_grad for p in probe.parameters())


def test_the_state_and_class_scores_need_what_they_read_and_move_the_head() -> None:
    images, labels = two_kinds(8)
    recipe = FLOW_ROLLOUT.with_overrides(
        epochs=1, prompts=8, prompts_per_epoch=8, window=6, known_rows=(14, 14), lr=1e-2,
        flow_weight=0.0, rows=0.0,
    )  # fmt: skip
    with pytest.raises(ValueError, match="pass the training images' labels"):
        train_rollout(
            tiny_flow_sampler(classes=0), images, recipe.with_overrides(classes=1.0), 0, "tiny"
        )
    with pytest.raises(ValueError, match="one per image"):
        train_rollout(
            tiny_flow_sampler(classes=0),
            images,
            recipe.with_overrides(classes=1.0),
            0,
            "t",
            labels[:3],
        )

    def trained(**weights: float) -> tuple[list[dict], torch.Tensor]:
        model = tiny_flow_sampler(steps=2, classes=0)
        torch.manual_seed(0)
        history = train_rollout(model, images, recipe.with_overrides(**weights), 0, "t", labels)
        return history, torch.cat([p.detach().flatten() for p in model.flow.parameters()])

    plain, before = trained()
    assert not {"state_score", "class_score"} & set(plain[0])
    for term, key in (("state", "state_score"), ("classes", "class_score")):
        history, after = trained(**{term: 5.0})
        assert history[0][key] > 0, history  # measured, and ...
        assert not torch.allclose(before, after), term  # ... in the loss the head follows
