"""The MSE stages of a training run: each recipe in turn. Used by `python -m training.train`.

A stage has its own Adam optimizer and cosine schedule (a stage is a fresh cycle, not the tail
of the one before). Every epoch is evaluated on a slice of the test split and checkpointed, with
its stage and its epoch within the stage in the history, so `--resume` continues a killed run
in the right stage, with that stage's optimizer state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from training import checkpoint
from training.loop import evaluate, train_epoch
from training.model import RowGenerator
from training.recipe import Recipe


def stage_optimizer(
    model: RowGenerator, recipe: Recipe
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam at the stage's rate, decayed to zero over its epochs when the recipe says cosine."""
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda e: 0.5 * (1 + math.cos(math.pi * e / recipe.epochs)) if recipe.cosine else 1.0,
    )
    return optimizer, schedule


def position(entry: dict) -> tuple[int, int]:
    """(stage, epoch within it) of a history entry; records from before stages were stage 0."""
    return entry.get("stage", 0), entry.get("stage_epoch", entry["epoch"])


def train_stages(
    model: RowGenerator,
    stages: Sequence[Recipe],
    first_stage: int,
    train_images: torch.Tensor,
    eval_images: torch.Tensor,
    device: torch.device,
    seed: int,
    name: str,
    save: Callable[[dict], None],
    history: list[dict],
    resumed: dict | None = None,
) -> list[dict]:
    """Train stages[first_stage:], skipping epochs `history` already holds; returns history.

    `save` receives the checkpoint's training state after every epoch; `resumed` is the
    checkpoint a `--resume` read (its optimizer state applies to the stage it stopped in).
    """
    done = {position(h) for h in history}
    for s in range(first_stage, len(stages)):
        recipe = stages[s]
        todo = [e for e in range(recipe.epochs) if (s, e) not in done]
        if not todo:
            continue
        optimizer, schedule = stage_optimizer(model, recipe)
        if resumed is not None and todo[0] > 0 and position(history[-1])[0] == s:
            optimizer.load_state_dict(resumed["optimizer"])
            schedule.load_state_dict(resumed["schedule"])
        for e in todo:
            epoch = len(history)  # over the whole run: seeds and plots count every epoch
            free_run = model.config.mode == "stream" and e >= recipe.free_run_from
            start = time.perf_counter()
            stats = train_epoch(
                model,
                train_images,
                optimizer,
                recipe.batch_size,
                free_run,
                recipe.feedback_grad,
                recipe.known_rows,
                torch.Generator().manual_seed(seed * 100_003 + epoch),
                recipe.grad_clip,
                device,
                desc=f"{name} stage {s + 1}/{len(stages)} {e + 1}/{recipe.epochs}",
                generated_only=recipe.score == "generated",
            )
            schedule.step()
            seconds = time.perf_counter() - start
            metrics = evaluate(model, eval_images, device)
            history.append(
                {"epoch": epoch, "stage": s, "stage_epoch": e, "free_run": free_run}
                | {"seconds": seconds, **stats, **metrics}
            )
            tqdm.write(
                f"{name} stage {s + 1} epoch {e + 1}/{recipe.epochs} loss {stats['loss']:.5f} "
                + " ".join(f"{k.removeprefix('test_mse_')} {v:.4f}" for k, v in metrics.items())
                + f" ({seconds:.0f}s, {stats['samples_per_s']:.0f} samples/s)"
            )
            save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "history": history,
                }
            )
    return history


def checkpoint_saver(path: Path, meta: dict) -> Callable[[dict], None]:
    """`save` for train_stages: the state plus the run's meta, written atomically to `path`."""
    return lambda state: checkpoint.save_atomic({**state, **meta}, path)
