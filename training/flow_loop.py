"""The sampler stage of a flow model: its flow head on the frozen recurrent core.

Run by `python -m training.train --head flow` after the mean stages (or instead of them, with
`--core-from`). The core and the mean head `fc` get no gradient, so step.onnx / complete.onnx
are the MSE recipe's own. The flow head learns p(next row | h_t) by conditional flow matching
(training.flow_head) in two recipes, one after the other (training.recipe): FLOW on every
(state, real next row) pair of the training split, the states computed once by the frozen core;
then FLOW_OWN, where from a random row of each image on the core reads the head's own draws
instead of the real rows (`own_draws`), and the targets stay the real next rows. A sampled
completion reads nothing but its own rows, and a head that has only seen real ones lets their
errors pile up down the image; reading its draws teaches it to land back on a real row.
With `--rollout-epochs`, training.rollout_loop then scores whole sampled completions.
A head with classes (`--flow-classes`) first gets its class probe (fit_kind_probe), and every
row it learns or draws here is given its image's one-hot label as the class vector.
"""

from __future__ import annotations

import math
import time

import torch
from tqdm import tqdm

from rowgen import contract
from training.class_probe import fit_class_probe
from training.latent_loop import frozen_states
from training.model import RowGenerator
from training.recipe import FlowRecipe

# The kind probe reads the core's state after 4..27 rows (the prompts the rollout stage trains
# on and the evaluation judges start at 4) of this many training images, as in the prototypes
# that chose the design (docs/sampling.md): the probe has 2,570 weights and sees 144,000 states.
KIND_PROBE_IMAGES = 6000
KIND_PROBE_FIRST_DEPTH = 4


def fit_kind_probe(
    model: RowGenerator, images: torch.Tensor, labels: torch.Tensor, seed: int
) -> dict[str, float]:
    """Fit model.flow's class probe (FlowHead.decide reads through it) on the frozen core's
    states after KIND_PROBE_FIRST_DEPTH..27 rows of KIND_PROBE_IMAGES random training images;
    returns its accuracy on them and the seconds it took."""
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(seed * 100_003 + 140_000)
    chosen = torch.randperm(len(images), generator=generator)[:KIND_PROBE_IMAGES]
    states = frozen_states(model, images[chosen])[:, KIND_PROBE_FIRST_DEPTH - 1 :].float()
    depths = states.shape[1]
    read = labels[chosen].long()[:, None].expand(-1, depths).flatten()
    probe = fit_class_probe(states.flatten(0, 1), read, seed)
    model.flow.probe.load_state_dict(probe.state_dict())
    accuracy = float((probe.predict(states.flatten(0, 1)) == read).float().mean())
    return {"kind_probe_accuracy": accuracy, "seconds": time.perf_counter() - start}


def require_labels(model: RowGenerator, images: torch.Tensor, labels: torch.Tensor | None) -> None:
    """A head with classes trains on labelled rows: ValueError unless one label per image."""
    if model.flow.classes and (labels is None or len(labels) != len(images)):
        raise ValueError(
            f"a flow head with {model.flow.classes} classes trains on labelled rows: pass the "
            "training images' labels, one per image"
        )


def one_hot(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """Labels (...,) -> float one-hot class vectors (..., classes): the `kind` of real rows."""
    return torch.nn.functional.one_hot(labels.long(), classes).float()


def flow_epoch(
    model: RowGenerator,
    states: torch.Tensor,
    above: torch.Tensor,
    rows: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    recipe: FlowRecipe,
    generator: torch.Generator,
    desc: str,
    labels: torch.Tensor | None = None,
) -> dict[str, float]:
    """One pass over `recipe.pairs_per_epoch` random (state, next row) pairs; the mean loss.
    labels (N,): the images' classes, pair i being of image i // 27 (a head with classes)."""
    head = model.flow
    head.train()
    rows_per_image = contract.IMAGE_SIZE - 1
    order = torch.randperm(len(states), generator=generator)[: recipe.pairs_per_epoch]
    steps = math.ceil(len(order) / recipe.batch_size)
    bar = tqdm(range(steps), desc=desc, unit="batch", leave=False, dynamic_ncols=True)
    total, count, start = 0.0, 0, time.perf_counter()
    for i in bar:
        index = order[i * recipe.batch_size : (i + 1) * recipe.batch_size]
        h = states[index].float()
        kind = None if labels is None else one_hot(labels[index // rows_per_image], head.classes)
        loss = head.loss(h, above[index], rows[index], weighting=recipe.weighting, kind=kind)
        loss = loss.mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(optimizer.param_groups[0]["params"], recipe.grad_clip)
        optimizer.step()
        schedule.step()
        total += float(loss.detach()) * len(index)
        count += len(index)
        bar.set_postfix(loss=f"{total / count:.3f}")
    return {"flow_loss": total / count, "rows_per_s": count / (time.perf_counter() - start)}


@torch.no_grad()
def own_draws(
    model: RowGenerator,
    images: torch.Tensor,
    states: torch.Tensor,
    rounds: int,
    seed: int,
    labels: torch.Tensor | None = None,
    chunk: int = 2000,
) -> torch.Tensor:
    """Images whose rows from a random row r in 1..27 on are the head's own draws, (N, 28, 28).

    Round 1 draws each row t + 1 at temperature 1 from the real state h_t and real row t: it
    errs as one sampled row does. Round j draws it from the state and row t of round j - 1's
    images, so errors pile up j rows deep, not all the way as in a whole sampled completion
    (where the real next row would no longer be a fair target). states (N, 27, H): the frozen
    core's states of the real images; labels (N,) their classes, given as the class vector to
    a head with classes.
    """
    head = model.flow.eval()
    generator = torch.Generator().manual_seed(seed * 100_003 + 60_000)
    first = torch.randint(1, contract.IMAGE_SIZE, (len(images), 1, 1), generator=generator)
    drawn_rows = torch.arange(1, contract.IMAGE_SIZE)[:, None] >= first  # (N, 27, 1)
    read = images
    for round_ in range(rounds):
        if round_:
            states = frozen_states(model, read)
        out = images.clone()
        for f in range(0, len(images), chunk):
            x, h = read[f : f + chunk], states[f : f + chunk].float()
            noise = torch.randn(x[:, 1:].shape, generator=generator)
            kind = None if labels is None else one_hot(labels[f : f + chunk, None], head.classes)
            drawn = head.sample_row(h, x[:, :-1], noise, torch.ones(*h.shape[:-1], 1), kind)
            out[f : f + chunk, 1:] = torch.where(
                drawn_rows[f : f + chunk], drawn, images[f : f + chunk, 1:]
            )
        read = out
    return read


def train_flow(
    model: RowGenerator,
    train_images: torch.Tensor,
    recipe: FlowRecipe,
    seed: int,
    name: str,
    states: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
) -> list[dict]:
    """Train model.flow for recipe.epochs with the core frozen; returns per-epoch history, the
    first epoch's with `prepare_seconds` (the states and own draws computed before it).

    states: the frozen core's (N, 27, H) states of train_images, when already computed; labels
    (N,): their classes, which a head with classes needs.
    """
    require_labels(model, train_images, labels)
    labels = labels if model.flow.classes else None
    prepare_start = time.perf_counter()
    model.rnn.requires_grad_(False)
    model.fc.requires_grad_(False)
    read = train_images
    if recipe.prefix_noise:
        # The sampler reads its own draws, which are not quite real rows: reading noisy real rows
        # in training teaches the head to land on a real next row from such a state.
        generator = torch.Generator().manual_seed(seed * 100_003 + 70_000)
        noise = torch.randn(train_images.shape, generator=generator)
        read = (train_images + recipe.prefix_noise * noise).clamp(0.0, 1.0)
        states = None
    if states is None:
        states = frozen_states(model, read)
    if recipe.own_draws:  # a head trained already goes on, reading its own rows
        read = own_draws(model, train_images, states, recipe.own_draws, seed, labels)
        states = frozen_states(model, read)
    states = states.flatten(0, 1)  # (N * 27, H): h_t
    above = read[:, :-1].reshape(-1, contract.IMAGE_SIZE)  # (N * 27, 28): row t
    rows = train_images[:, 1:].reshape(-1, contract.IMAGE_SIZE)  # (N * 27, 28): row t + 1
    if model.flow.base is not None:
        model.flow.base.load_state_dict(model.fc.state_dict())
        model.flow.base.requires_grad_(False)
    trained = [p for p in model.flow.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trained, lr=recipe.lr)
    total = recipe.epochs * math.ceil(min(recipe.pairs_per_epoch, len(states)) / recipe.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step / total, 1.0)))
    )
    history = []
    for epoch in range(recipe.epochs):
        generator = torch.Generator().manual_seed(seed * 100_003 + 80_000 + epoch)
        torch.manual_seed(seed * 100_003 + 90_000 + epoch)  # the path's noise and times
        start = time.perf_counter()
        desc = f"{name} flow {epoch + 1}/{recipe.epochs}"
        stats = flow_epoch(
            model, states, above, rows, optimizer, schedule, recipe, generator, desc, labels
        )
        seconds = time.perf_counter() - start
        history.append({"epoch": epoch, "seconds": seconds, **stats})
        if epoch == 0:
            history[0]["prepare_seconds"] = start - prepare_start
        tqdm.write(
            f"{name} flow epoch {epoch + 1}/{recipe.epochs} loss {stats['flow_loss']:.4f} "
            f"({stats['rows_per_s']:.0f} rows/s, {seconds:.0f}s)"
        )
    model.rnn.requires_grad_(True)
    model.fc.requires_grad_(True)
    return history
