"""Test-split MSE of a completer, and a completer for a bundle's `complete.onnx` on onnxruntime.

Shared by `python -m export --from-state-dict` (which scores the course bundle it writes) and
`python -m evaluation.evaluate` (`make eval`), so both report the same numbers the same way.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from rowgen import contract, sessions
from rowgen.bundle import Bundle
from training.model import completion_mse

Completer = Callable[[np.ndarray, int], np.ndarray]  # (images (N, 28, 28), k) -> completed
GRID_K = 14  # the known rows of the per-class table and the completion grids


def onnx_completer(bundle: Bundle, batch_size: int) -> Completer:
    session = sessions.open_session(bundle.read(contract.COMPLETE_ONNX))  # the verified bytes

    def run(images: np.ndarray, k: int) -> np.ndarray:
        parts = []
        for first in range(0, len(images), batch_size):
            batch = np.ascontiguousarray(images[first : first + batch_size])
            known = np.full(len(batch), k, np.int64)
            parts.append(session.run(None, {"image": batch, "known_rows": known})[0])
        return np.concatenate(parts)

    return run


def score(
    complete: Completer, images: np.ndarray, labels: np.ndarray, class_names: list[str]
) -> tuple[dict, np.ndarray]:
    """MSE at each evaluation k, per class at GRID_K, and the GRID_K completions."""
    target = torch.from_numpy(images)
    result: dict[str, object] = {}
    for k in contract.EVAL_KNOWN_ROWS:
        done = complete(images, k)
        result[f"test_mse_k{k}"] = completion_mse(torch.from_numpy(done), target, k)
        if k == GRID_K:
            kept = done
            result[f"per_class_k{k}"] = {
                name: completion_mse(torch.from_numpy(done[labels == c]), target[labels == c], k)
                for c, name in enumerate(class_names)
                if (labels == c).any()
            }
    return result, kept
