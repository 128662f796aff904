"""One training epoch and one evaluation pass, for both modes. Used by `training.train`.

Stream mode trains on teacher-forced next-row loss first, then on free-running completions: the
known rows are read, and every later row is the model's own clipped prediction fed back, so the
gradient teaches the model to recover from its own errors (the deployed behaviour).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from rowgen import contract
from training.model import RowGenerator, complete, completion_mse


def stream_loss(
    model: RowGenerator,
    images: torch.Tensor,
    known_rows: int | None,
    feedback_grad: bool = True,
    generated_only: bool = False,
) -> torch.Tensor:
    """MSE of the predictions of rows 1..27; known_rows=None is pure teacher forcing.

    feedback_grad=False treats each fed-back row as a constant input (cheaper, and the loss
    landscape stays close to the teacher-forced one). generated_only scores rows known_rows..27
    alone: the completion error that evaluation measures, without the prompt's own rows.
    """
    if known_rows is None:
        pred, _ = model(images[:, :-1])  # (B, 27, 28)
        return F.mse_loss(pred, images[:, 1:])
    out, state = model(images[:, :known_rows])  # (B, k, 28): predictions of rows 1..k
    preds = [out]
    row = out[:, -1]
    for _ in range(known_rows, contract.IMAGE_SIZE - 1):  # feed generated row r, predict r + 1
        fed = row.clamp(0.0, 1.0)
        o, state = model((fed if feedback_grad else fed.detach())[:, None], state)
        preds.append(o)
        row = o[:, 0]
    first = known_rows - 1 if generated_only else 0  # prediction i is of row i + 1
    return F.mse_loss(torch.cat(preds, dim=1)[:, first:], images[:, first + 1 :])


def window_batch(images: torch.Tensor, flat_index: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The course's samples: window rows i..i+13 of an image, target row i+14."""
    per_image = contract.IMAGE_SIZE - contract.WINDOW  # 14 windows per image
    img, offset = flat_index // per_image, flat_index % per_image
    rows = offset[:, None] + torch.arange(contract.WINDOW, device=flat_index.device)  # (B, 14)
    return images[img[:, None], rows], images[img, offset + contract.WINDOW]


def train_epoch(
    model: RowGenerator,
    images: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    free_run: bool,
    feedback_grad: bool,
    known_rows: tuple[int, int],
    generator: torch.Generator,
    grad_clip: float,
    device: torch.device,
    desc: str,
    generated_only: bool = False,
) -> dict[str, float]:
    """One pass over `images` (N, 28, 28); returns mean loss and images (or windows) per second."""
    model.train()
    window = model.config.mode == "window"
    n = len(images) * (contract.IMAGE_SIZE - contract.WINDOW if window else 1)
    order = torch.randperm(n, generator=generator)
    batches = range(0, n, batch_size)
    # Counted by hand, not by iterating the bar: tqdm's iterator stores `n` only at its own
    # throttled redraws, and the per-batch set_postfix redrew that stale count (a window-mode
    # run showed 0/329 through its first 22 batches, every batch). update() keeps `n` exact,
    # redraws at most once per mininterval, and miniters=1 stops tqdm skipping redraws.
    bar = tqdm(
        total=len(batches),
        desc=desc,
        unit="batch",
        leave=False,
        dynamic_ncols=True,
        mininterval=1.0,
        miniters=1,
    )
    total, count, start = 0.0, 0, time.perf_counter()
    for first in batches:
        index = order[first : first + batch_size].to(images.device)
        if window:
            x, y = (t.to(device) for t in window_batch(images, index))
            loss = F.mse_loss(model.predict_window(x), y)
        else:
            k = int(torch.randint(known_rows[0], known_rows[1] + 1, (1,), generator=generator))
            batch = images[index].to(device)
            loss = stream_loss(model, batch, k if free_run else None, feedback_grad, generated_only)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        total += float(loss.detach()) * len(index)
        count += len(index)
        rate = count / (time.perf_counter() - start)
        bar.set_postfix(loss=f"{total / count:.4f}", img_s=f"{rate:.0f}", refresh=False)
        bar.update()
    bar.close()
    return {"loss": total / count, "samples_per_s": count / (time.perf_counter() - start)}


@torch.no_grad()
def evaluate(
    model: RowGenerator,
    images: torch.Tensor,
    device: torch.device,
    known_rows: tuple[int, ...] = contract.EVAL_KNOWN_ROWS,
    batch_size: int = 2000,
) -> dict[str, float]:
    """Completion MSE of the generated rows for each k: {"test_mse_k7": ..., ...}."""
    model.eval()
    result = {}
    for k in known_rows:
        sq, count = 0.0, 0
        for first in range(0, len(images), batch_size):
            batch = images[first : first + batch_size].to(device)
            ks = torch.full((len(batch),), k, dtype=torch.long, device=device)
            done = complete(model, batch, ks)
            sq += completion_mse(done, batch, k) * len(batch)
            count += len(batch)
        result[f"test_mse_k{k}"] = sq / count
    return result
