"""The second training stage of a cvae model: its latent head on the frozen recurrent core.

Run by `python -m training.train --head cvae` after the MSE stage (or instead of it, with
`--core-from` naming a trained MSE model's weights). The core and the mean head `fc` get no
gradient, so the mean completion (step.onnx / complete.onnx) is the MSE recipe's own; the
latent head maximises the evidence lower bound of every real next row given the
teacher-forced state (training.latent).
"""

from __future__ import annotations

import math
import time

import torch
from tqdm import tqdm

from rowgen import contract
from training.latent import bits_per_pixel, row_bound, top_states
from training.model import RowGenerator
from training.recipe import LatentRecipe


@torch.no_grad()
def frozen_states(model: RowGenerator, images: torch.Tensor, chunk: int = 1000) -> torch.Tensor:
    """The frozen core's h_t for every image and row, (N, 27, H), stored as float16 (half the
    memory: 0.8 GB for 60,000 images at H = 256; h is in [-1, 1], so 1e-3 precision)."""
    parts = [
        top_states(model, images[first : first + chunk, :-1]).half()
        for first in range(0, len(images), chunk)
    ]
    return torch.cat(parts)


def latent_epoch(
    model: RowGenerator,
    images: torch.Tensor,
    states: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    recipe: LatentRecipe,
    epoch: int,
    generator: torch.Generator,
    desc: str,
) -> dict[str, float]:
    """One pass; returns the mean bound (nats per pixel, at the epoch's KL weights) and KL."""
    model.latent.train()
    n = len(images)
    order = torch.randperm(n, generator=generator)
    steps = math.ceil(n / recipe.batch_size)
    bar = tqdm(range(steps), desc=desc, unit="batch", leave=False, dynamic_ncols=True)
    total = kl_total = 0.0
    count, start = 0, time.perf_counter()
    for i in bar:
        index = order[i * recipe.batch_size : (i + 1) * recipe.batch_size].to(images.device)
        rows = torch.randperm(contract.IMAGE_SIZE - 1, generator=generator)
        rows = rows[: recipe.rows_per_image].to(images.device)  # scored rows t + 1
        h = states[index][:, rows].float()  # (B, R, H): h_t read rows 0..t
        rec, kl_dims = row_bound(model, h, images[index][:, rows + 1])  # (B, R), (B, R, D)
        kl = kl_dims.sum(-1)  # (B, R) nats per row
        progress = (epoch + i / steps) / recipe.kl_warmup if recipe.kl_warmup else 1.0
        beta = min(1.0, progress)
        # Free bits: a dimension whose batch-mean KL is under the floor is not pushed lower, so
        # the decoder cannot learn to ignore z (which would make samples the blurred mean).
        kept = kl_dims.mean((0, 1)).clamp(min=recipe.free_bits).sum()
        loss = (rec.mean() + beta * kept) / contract.IMAGE_SIZE  # nats per pixel
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.latent.parameters(), recipe.grad_clip)
        optimizer.step()
        total += float((rec + kl).mean().detach()) * len(index)
        kl_total += float(kl.mean().detach()) * len(index)
        count += len(index)
        bar.set_postfix(bpp=f"{total / count / contract.IMAGE_SIZE / math.log(2):.3f}")
    return {
        "bound_bpp": total / count / contract.IMAGE_SIZE / math.log(2.0),
        "kl_nats_per_row": kl_total / count,
        "images_per_s": count / (time.perf_counter() - start),
    }


def test_bits(model: RowGenerator, images: torch.Tensor, batch_size: int = 1000) -> dict:
    """Test bound in bits per pixel of rows k..27 given the rows above, for every eval k."""
    model.eval()
    result = {}
    for k in contract.EVAL_KNOWN_ROWS:
        total = 0.0
        for first in range(0, len(images), batch_size):
            batch = images[first : first + batch_size]
            total += bits_per_pixel(model, batch, k) * len(batch)
        result[f"test_bpp_k{k}"] = total / len(images)
    return result


def train_latent(
    model: RowGenerator,
    train_images: torch.Tensor,
    test_images: torch.Tensor,
    recipe: LatentRecipe,
    seed: int,
    name: str,
) -> list[dict]:
    """Train model.latent for recipe.epochs with the core frozen; returns per-epoch history."""
    model.rnn.requires_grad_(False)
    model.fc.requires_grad_(False)
    optimizer = torch.optim.Adam(model.latent.parameters(), lr=recipe.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda e: 0.5 * (1 + math.cos(math.pi * e / recipe.epochs))
    )
    states = frozen_states(model, train_images)
    history = []
    for epoch in range(recipe.epochs):
        generator = torch.Generator().manual_seed(seed * 100_003 + 50_000 + epoch)
        torch.manual_seed(seed * 100_003 + 70_000 + epoch)  # the reparameterisation draws
        start = time.perf_counter()
        stats = latent_epoch(
            model,
            train_images,
            states,
            optimizer,
            recipe,
            epoch,
            generator,
            desc=f"{name} latent {epoch + 1}/{recipe.epochs}",
        )
        schedule.step()
        seconds = time.perf_counter() - start
        bits = test_bits(model, test_images)
        history.append({"epoch": epoch, "seconds": seconds, **stats, **bits})
        tqdm.write(
            f"{name} latent epoch {epoch + 1}/{recipe.epochs} bound {stats['bound_bpp']:.4f} bpp, "
            f"KL {stats['kl_nats_per_row']:.2f} nats/row, test "
            + " ".join(f"{k.removeprefix('test_bpp_')} {v:.4f}" for k, v in bits.items())
            + f" ({seconds:.0f}s)"
        )
    model.rnn.requires_grad_(True)
    model.fc.requires_grad_(True)
    return history
