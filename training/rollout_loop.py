"""A flow head's last stage: scoring its own sampled completions by the energy score.

Run by `make train` (`python -m training.train --head flow`, `--rollout-epochs` for other than
FLOW_ROLLOUT's 2; 0 skips it) after training.flow_loop's recipes. For a batch of training
images and a prompt length k drawn from `recipe.known_rows`, the frozen core reads the real rows
above k; the head then samples `recipe.draws` completions of the next `recipe.window`
rows exactly as sample.onnx does (its rows fed back to the core, 12 Euler steps each), and the
whole completions are scored against the real rows by the energy score

    ES = mean_m |X_m - Y| - 1/2 mean_{m != n} |X_m - X_n|      (|.| the Euclidean norm)

a strictly proper scoring rule for the joint distribution of all the rows drawn: its expectation
is least when the draws X come from the distribution of the real bottom Y. The gradient flows
through every Euler step and every fed-back row (the core's weights stay frozen), so each row's
draw is judged by the rows it leads to: the errors that pile up in a completion are what the
loss sees, not a row-by-row stand-in for them. With `recipe.vertical`, the scored vector also
holds each row's difference from the row above (scaled by it), which weighs row-to-row
consistency; the score stays proper (the pixels are still in it). The flow-matching loss on the
same images' real rows (`recipe.flow_weight`) keeps the head's per-row density, which the bits
per pixel bound reads. With `recipe.steadiness`, one more completion per prompt, its prompt's
last row nudged and its noise draw 0's, adds the squared chain gain (chain_gain) to the loss:
it makes completions move less with the rows above them, at a cost in realism that kept it out
of the shipped recipe (docs/sampling.md). With `recipe.rows`, every row of the window is also
drawn `recipe.draws` times given the *real* rows above it (row_draws) and each row is scored
alone by the energy score, weighted by it: in 28 dimensions the score feels a row's spread
about the row above more keenly than in a whole completion's. With `recipe.state`, the frozen
core also reads each drawn completion to its last row, and its state there is scored by the
energy score against its state after the real rows (read_states): the core's summary of the
whole image, in which a linear probe finds the class (evaluation.class_drift), so a completion
is also judged by what the core makes of it as a whole, not by its pixels alone. With
`recipe.classes`, that state is read by a linear class probe (training.class_probe, fitted at the
stage's start on the core's states after the real rows of the training images), and its
probabilities are scored by the energy score against the image's one-hot label: proper for the
label's distribution given the prompt, so it rewards completions that each settle on a class,
as often as the prompt allows each, not completions that blur two.

A head with classes draws every completion and every one-row draw here with the class vector
decided from the state after the prompt (FlowHead.decide, at `recipe.class_temperature`),
held, as sample.onnx does; its flow loss on the real rows is given the image's one-hot label.
"""

from __future__ import annotations

import math
import time

import torch
from tqdm import tqdm

from rowgen import contract
from training.class_probe import ClassProbe, fit_class_probe
from training.flow_head import CLASS_TEMPERATURE, FlowHead
from training.flow_loop import one_hot, require_labels
from training.latent_loop import frozen_states
from training.model import RowGenerator, State
from training.recipe import RolloutRecipe


def energy_score(draws: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Energy score per prompt, (B,), with its two terms: draws (M, B, D) with M >= 2, real
    (B, D). Returns (score, fit, spread): fit = mean_m |X_m - Y|, spread = mean over pairs
    m < n of |X_m - X_n|, score = fit - spread / 2."""
    m = draws.shape[0]
    if m < 2:
        raise ValueError(f"energy score: at least 2 draws per prompt, got {m}")
    fit = (draws - real).pow(2).sum(-1).add(1e-8).sqrt().mean(0)
    first, second = torch.triu_indices(m, m, offset=1)
    spread = (draws[first] - draws[second]).pow(2).sum(-1).add(1e-8).sqrt().mean(0)
    return fit - 0.5 * spread, fit, spread


def scored(rows: torch.Tensor, above: torch.Tensor, vertical: float) -> torch.Tensor:
    """What the energy score compares: rows (..., L, 28) flattened, and with `vertical` > 0 each
    row's difference from the one above it (the first row's from `above`, (..., 28)) times it."""
    flat = rows.flatten(-2)
    if not vertical:
        return flat
    previous = torch.cat([above.expand(*rows.shape[:-2], rows.shape[-1])[..., None, :], rows], -2)
    return torch.cat([flat, vertical * (rows - previous[..., :-1, :]).flatten(-2)], -1)


def rollout(
    model: RowGenerator,
    prompts: torch.Tensor,
    window: int,
    draws: int,
    generator: torch.Generator,
    nudge: torch.Tensor | None = None,
    kind: torch.Tensor | None = None,
) -> torch.Tensor:
    """`draws` sampled completions (M, B, window, 28) of prompts (B, k, 28) at temperature 1,
    as training.latent.sample draws them, differentiable in the head's weights. With `nudge`
    (B, 28), one more completion (index M) of the prompts with their last row moved by it, drawn
    with draw 0's noise: chain_gain compares the two. kind (B, C): the class vector each
    prompt's draws hold (prompt_kind), for a head with classes."""
    b = len(prompts)
    with torch.no_grad():
        before = model.rnn(prompts[:, :-1])[1] if prompts.shape[1] > 1 else None
        out, state = model.rnn(prompts[:, -1:], before)
        h, row = out[:, -1].repeat(draws, 1), prompts[:, -1].repeat(draws, 1)
        state = _repeat(state, draws)  # draw m of prompt i at m * B + i
        held = None if kind is None else kind.repeat(draws, 1)
        if nudge is not None:
            moved = prompts[:, -1] + nudge
            out_moved, state_moved = model.rnn(moved[:, None], before)
            h, row = torch.cat([h, out_moved[:, -1]]), torch.cat([row, moved])
            state = _cat(state, state_moved)
            held = None if kind is None else torch.cat([held, kind])
    one = torch.ones(len(h), 1)
    rows = []
    for t in range(window):
        noise = torch.randn(b * draws, contract.IMAGE_SIZE, generator=generator)
        if nudge is not None:
            noise = torch.cat([noise, noise[:b]])
        row = model.flow.sample_row(h, row, noise, one, held)
        rows.append(row)
        if t + 1 < window:
            out, state = model.rnn(row[:, None], state)
            h = out[:, 0]
    return torch.stack(rows, 1).unflatten(0, (len(h) // b, b))


@torch.no_grad()
def prompt_kind(
    model: RowGenerator, prompts: torch.Tensor, temperature: float = CLASS_TEMPERATURE
) -> torch.Tensor | None:
    """The class vector (B, C) a head with classes holds for prompts (B, k, 28): decided from the
    core's state after their last row, sharpened by `temperature`. None for a head without
    classes."""
    if not model.flow.classes:
        return None
    return model.flow.decide(model.rnn(prompts)[0][:, -1], temperature)


def read_states(model: RowGenerator, prompts: torch.Tensor, drawn: torch.Tensor) -> torch.Tensor:
    """The core's output (M, B, H) after reading each prompt (B, k, 28) and then each of its
    drawn completions (M, B, L, 28), differentiable in the drawn rows (the core stays frozen)."""
    m, b = drawn.shape[:2]
    with torch.no_grad():
        state = _repeat(model.rnn(prompts)[1], m)  # read by every draw alike
    out, _ = model.rnn(drawn.flatten(0, 1), state)  # (M * B, L, H), draw m of prompt i at m * B + i
    return out[:, -1].unflatten(0, (m, b))


def fit_window_probe(
    model: RowGenerator,
    images: torch.Tensor,
    labels: torch.Tensor,
    first: int,
    generator: torch.Generator,
    chunk: int = 5000,
) -> ClassProbe:
    """A class probe of the core's output after rows 1..r of each image, r drawn per image from
    first..28: the depths at which the stage's completions end."""
    depth = torch.randint(first, contract.IMAGE_SIZE + 1, (len(images),), generator=generator)
    parts = []
    with torch.no_grad():
        for start in range(0, len(images), chunk):
            out, _ = model.rnn(images[start : start + chunk])  # (B, 28, H)
            at = depth[start : start + chunk] - 1
            parts.append(out[torch.arange(len(out)), at])
    return fit_class_probe(torch.cat(parts), labels)


def class_probs(probe: ClassProbe, states: torch.Tensor) -> torch.Tensor:
    """The probe's class probabilities (..., C) for core outputs (..., H)."""
    return torch.softmax(probe(states), dim=-1)


def row_draws(
    head: FlowHead,
    h: torch.Tensor,
    above: torch.Tensor,
    draws: int,
    generator: torch.Generator,
    kind: torch.Tensor | None = None,
) -> torch.Tensor:
    """`draws` rows (M, B, L, 28) sampled at temperature 1, each given the core's state h
    (B, L, H) after reading the real row `above` (B, L, 28) and the rows before it; kind (B, C)
    the class vector each image's rows hold (a head with classes)."""
    noise = torch.randn(draws, *above.shape, generator=generator)
    one = torch.ones(*above.shape[:-1], 1)
    held = None if kind is None else kind[:, None, :]
    h, above = h.expand(draws, *h.shape), above.expand(draws, *above.shape)
    return head.sample_row(h, above, noise, one, held)


def _repeat(state: State, times: int) -> State:
    """A core's state (an LSTM's (h, c) or a GRU's h, batch on axis 1) repeated `times` times."""
    if isinstance(state, tuple):
        return tuple(s.repeat(1, times, 1) for s in state)
    return state.repeat(1, times, 1)


def _cat(state: State, more: State) -> State:
    """Two cores' states, batches joined."""
    if isinstance(state, tuple):
        return tuple(torch.cat([s, m], 1) for s, m in zip(state, more, strict=True))
    return torch.cat([state, more], 1)


def chain_gain(drawn: torch.Tensor, nudged: torch.Tensor, nudge: torch.Tensor) -> torch.Tensor:
    """Per prompt, how far a completion (B, L, 28) moved, |nudged - drawn|, per unit of how far
    its prompt's last row moved, |nudge| (B, 28): (B,). Rounding differences between runtimes
    enter a sampled completion much as such nudges do, so this is roughly the factor they grow
    by."""
    return (nudged - drawn).flatten(1).norm(dim=1) / nudge.norm(dim=1)


def rollout_epoch(
    model: RowGenerator,
    images: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    recipe: RolloutRecipe,
    generator: torch.Generator,
    desc: str,
    labels: torch.Tensor | None = None,
    probe: ClassProbe | None = None,
) -> dict[str, float]:
    """One pass over `recipe.prompts_per_epoch` random images in batches of `recipe.prompts`;
    the means of the energy score, its terms and the flow loss (and the class score, from the
    images' `labels` read through `probe`, where the recipe weighs it)."""
    head = model.flow
    head.train()
    order = torch.randperm(len(images), generator=generator)[: recipe.prompts_per_epoch]
    steps = math.ceil(len(order) / recipe.prompts)
    low, high = recipe.known_rows
    bar = tqdm(range(steps), desc=desc, unit="batch", leave=False, dynamic_ncols=True)
    named = ("energy_score", "fit", "spread", "flow_loss")
    extra = (
        (("squared_gain",) if recipe.steadiness else ())
        + (("row_score",) if recipe.rows else ())
        + (("state_score",) if recipe.state else ())
        + (("class_score",) if recipe.classes else ())
    )
    totals = dict.fromkeys(named + extra, 0.0)
    start = time.perf_counter()
    for i in bar:
        batch = order[i * recipe.prompts : (i + 1) * recipe.prompts]
        x = images[batch]
        k = int(torch.randint(low, high + 1, (), generator=generator))
        window = min(recipe.window, contract.IMAGE_SIZE - k)
        nudge = None
        if recipe.steadiness:
            direction = torch.randn(len(x), contract.IMAGE_SIZE, generator=generator)
            nudge = recipe.nudge * direction / direction.norm(dim=1, keepdim=True)
        kind = prompt_kind(model, x[:, :k], recipe.class_temperature)
        drawn = rollout(model, x[:, :k], window, recipe.draws, generator, nudge, kind)
        above, real = x[:, k - 1], x[:, k : k + window]
        if nudge is not None:
            gain = chain_gain(drawn[0], drawn[-1], nudge)
            drawn = drawn[:-1]
        score, fit, spread = energy_score(
            scored(drawn, above, recipe.vertical), scored(real, above, recipe.vertical)
        )
        loss = score.mean()
        if nudge is not None:
            loss = loss + recipe.steadiness * gain.pow(2).mean()
            totals["squared_gain"] += float(gain.detach().pow(2).mean())
        flow = torch.zeros(())
        if recipe.flow_weight or recipe.rows:
            with torch.no_grad():
                h = frozen_states(model, x).float()  # h[:, t]: after reading rows 0..t
        if recipe.flow_weight:
            label = None if kind is None else one_hot(labels[batch, None], head.classes)
            flow = head.loss(h, x[:, :-1], x[:, 1:], weighting="row", kind=label).mean()
            loss = loss + recipe.flow_weight * flow
        if recipe.rows:
            window_above = slice(k - 1, k - 1 + window)  # states and rows above the window's
            one_row = row_draws(
                head, h[:, window_above], x[:, window_above], recipe.draws, generator, kind
            )
            row_score = energy_score(one_row.flatten(1, 2), real.flatten(0, 1))[0].mean()
            loss = loss + recipe.rows * row_score
            totals["row_score"] += float(row_score.detach())
        if recipe.state or recipe.classes:
            read = read_states(model, x[:, :k], drawn)  # (M, B, H)
        if recipe.state:
            with torch.no_grad():
                real_state = model.rnn(x[:, : k + window])[0][:, -1]  # (B, H), exact
            state_score = energy_score(read, real_state)[0].mean()
            loss = loss + recipe.state * state_score
            totals["state_score"] += float(state_score.detach())
        if recipe.classes:
            onehot = torch.nn.functional.one_hot(labels[batch].long(), probe.linear.out_features)
            class_score = energy_score(class_probs(probe, read), onehot.float())[0].mean()
            loss = loss + recipe.classes * class_score
            totals["class_score"] += float(class_score.detach())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(optimizer.param_groups[0]["params"], recipe.grad_clip)
        optimizer.step()
        schedule.step()
        for key, value in zip(named, (score.mean(), fit.mean(), spread.mean(), flow), strict=True):
            totals[key] += float(value.detach())
        bar.set_postfix(score=f"{totals['energy_score'] / (i + 1):.3f}")
    seconds = time.perf_counter() - start
    return {
        **{key: total / steps for key, total in totals.items()},
        "prompts_per_s": len(order) / seconds,
    }


def train_rollout(
    model: RowGenerator,
    train_images: torch.Tensor,
    recipe: RolloutRecipe,
    seed: int,
    name: str,
    labels: torch.Tensor | None = None,
) -> list[dict]:
    """Train model.flow on its own completions for recipe.epochs with the core and the mean
    head frozen; returns the per-epoch history. A recipe with a class score, and a head with
    classes, need the images' `labels`."""
    require_labels(model, train_images, labels)
    probe = None
    if recipe.classes:
        if labels is None or len(labels) != len(train_images):
            raise ValueError(
                "rollout recipe with a class score (classes > 0): pass the training images' "
                "labels, one per image"
            )
        first = recipe.known_rows[0] + min(
            recipe.window, contract.IMAGE_SIZE - recipe.known_rows[0]
        )
        probe_generator = torch.Generator().manual_seed(seed * 100_003 + 130_000)
        probe = fit_window_probe(model, train_images, labels, first, probe_generator)
    model.rnn.requires_grad_(False)
    model.fc.requires_grad_(False)
    trained = [p for p in model.flow.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trained, lr=recipe.lr)
    per_epoch = math.ceil(min(recipe.prompts_per_epoch, len(train_images)) / recipe.prompts)
    total = recipe.epochs * per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / total, 1.0)))
    )
    history = []
    for epoch in range(recipe.epochs):
        generator = torch.Generator().manual_seed(seed * 100_003 + 110_000 + epoch)
        torch.manual_seed(seed * 100_003 + 120_000 + epoch)  # the flow loss's noise and times
        start = time.perf_counter()
        desc = f"{name} rollouts {epoch + 1}/{recipe.epochs}"
        stats = rollout_epoch(
            model, train_images, optimizer, schedule, recipe, generator, desc, labels, probe
        )
        seconds = time.perf_counter() - start
        history.append({"epoch": epoch, "seconds": seconds, **stats})
        tqdm.write(
            f"{name} rollout epoch {epoch + 1}/{recipe.epochs} energy score "
            f"{stats['energy_score']:.4f} (fit {stats['fit']:.3f}, spread {stats['spread']:.3f}, "
            f"flow loss {stats['flow_loss']:.3f}"
            + (f", squared gain {stats['squared_gain']:.1f}" if "squared_gain" in stats else "")
            + (f", one-row score {stats['row_score']:.4f}" if "row_score" in stats else "")
            + (f", state score {stats['state_score']:.4f}" if "state_score" in stats else "")
            + (f", class score {stats['class_score']:.4f}" if "class_score" in stats else "")
            + f"; {stats['prompts_per_s']:.0f} prompts/s, {seconds:.0f}s)"
        )
    model.rnn.requires_grad_(True)
    model.fc.requires_grad_(True)
    return history
