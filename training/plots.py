"""Training pictures: the loss curve and the completion grid, as PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt
import numpy as np

from rowgen import contract
from rowgen.pictures import completion_grid
from training.stages import position


def loss_curve(history: list[dict], path: Path, free_run_from: int, title: str) -> None:
    """Training loss and test completion MSE per epoch, free-running epochs shaded."""
    epochs = [h["epoch"] + 1 for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(epochs, [h["loss"] for h in history], marker="o", ms=3)
    ax1.set(title="training loss (MSE)", xlabel="epoch", yscale="log")
    for k in contract.EVAL_KNOWN_ROWS:
        ax2.plot(epochs, [h[f"test_mse_k{k}"] for h in history], marker="o", ms=3, label=f"k={k}")
    ax2.set(title="completion MSE, generated rows (test subset)", xlabel="epoch")
    ax2.legend()
    # where a later stage starts (training.stages): its loss is another objective, so a jump
    pairs = zip(history[1:], history[:-1], strict=True)
    starts = [h["epoch"] + 1 for h, before in pairs if position(h)[0] > position(before)[0]]
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if free_run_from < len(history):
            ax.axvspan(free_run_from + 0.5, len(history) + 0.5, color="tab:orange", alpha=0.1)
        for epoch in starts:
            ax.axvline(epoch - 0.5, color="grey", linestyle="--", linewidth=1)
    if starts:
        ax1.text(starts[0] - 0.3, ax1.get_ylim()[1], " focus stages", va="top", fontsize=8)
    fig.suptitle(
        title + ("  (shaded: free-running fine-tuning)" if free_run_from < len(history) else "")
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sample_indices(labels: np.ndarray, classes: int = 10) -> list[int]:
    """The first test image of each class: a fixed, readable set for every grid."""
    return [int(np.flatnonzero(labels == c)[0]) for c in range(classes) if (labels == c).any()]


def save_grid(
    originals: np.ndarray,
    completed: np.ndarray,
    known_rows: int,
    labels: list[str],
    path: Path,
    title: str,
) -> None:
    completion_grid(originals, completed, known_rows, labels, title=title).save(path)
