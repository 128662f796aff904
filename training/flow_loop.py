"""The sampler stage of a flow model: its flow head on the frozen recurrent core.

Run by `python -m training.train --head flow` after the mean stages (or instead of them, with
`--core-from`). The core and the mean head `fc` get no gradient, so step.onnx / complete.onnx
are the MSE recipe's own; the flow head learns p(next row | h_t) by conditional flow matching
(training.flow_head) on every (state, real next row) pair of the training split, the states
computed once by the frozen core.
"""

from __future__ import annotations

import math
import time

import torch
from tqdm import tqdm

from rowgen import contract
from training.latent_loop import frozen_states
from training.model import RowGenerator
from training.recipe import FlowRecipe


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
) -> dict[str, float]:
    """One pass over `recipe.pairs_per_epoch` random (state, next row) pairs; the mean loss."""
    head = model.flow
    head.train()
    order = torch.randperm(len(states), generator=generator)[: recipe.pairs_per_epoch]
    steps = math.ceil(len(order) / recipe.batch_size)
    bar = tqdm(range(steps), desc=desc, unit="batch", leave=False, dynamic_ncols=True)
    total, count, start = 0.0, 0, time.perf_counter()
    for i in bar:
        index = order[i * recipe.batch_size : (i + 1) * recipe.batch_size]
        loss = head.loss(states[index].float(), above[index], rows[index]).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(optimizer.param_groups[0]["params"], recipe.grad_clip)
        optimizer.step()
        schedule.step()
        total += float(loss.detach()) * len(index)
        count += len(index)
        bar.set_postfix(loss=f"{total / count:.3f}")
    return {"flow_loss": total / count, "rows_per_s": count / (time.perf_counter() - start)}


def train_flow(
    model: RowGenerator,
    train_images: torch.Tensor,
    recipe: FlowRecipe,
    seed: int,
    name: str,
    states: torch.Tensor | None = None,
) -> list[dict]:
    """Train model.flow for recipe.epochs with the core frozen; returns per-epoch history.

    states: the frozen core's (N, 27, H) states of train_images, when already computed.
    """
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
        stats = flow_epoch(model, states, above, rows, optimizer, schedule, recipe, generator, desc)
        seconds = time.perf_counter() - start
        history.append({"epoch": epoch, "seconds": seconds, **stats})
        tqdm.write(
            f"{name} flow epoch {epoch + 1}/{recipe.epochs} loss {stats['flow_loss']:.4f} "
            f"({stats['rows_per_s']:.0f} rows/s, {seconds:.0f}s)"
        )
    model.rnn.requires_grad_(True)
    model.fc.requires_grad_(True)
    return history
