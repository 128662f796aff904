"""Feature sets other than the project's CNN, so a sampler is not tuned to one judge.

- `pca`: the top 50 principal components of raw pixels, fitted on the training split (no network
  at all: it sees blur, stripes and misplaced mass, not classes);
- `mlp`: the 64-unit hidden layer of a fully connected classifier (784-256-64-10, no
  convolutions) trained for two epochs on the training split with its own seed; its own
  predictions give a second class agreement, from a network the sampler never saw.

Each embeds (N, 28, 28) images in [0, 1] to (N, D) float64 features for evaluation.frechet.
Used by `python -m evaluation.sweep_sampler` and `make eval` (evaluation.sample_measures).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

Embed = Callable[[np.ndarray], np.ndarray]
PCA_DIMS = 50
MLP_EPOCHS = 2
MLP_SEED = 12345  # not the project classifier's seed: another network, another judge


def pca_embed(train: np.ndarray, dims: int = PCA_DIMS) -> Embed:
    flat = train.reshape(len(train), -1).astype(np.float64)
    mean = flat.mean(0)
    _, _, vt = np.linalg.svd(flat[::4] - mean, full_matrices=False)  # 15,000 rows suffice
    basis = vt[:dims].T  # (784, dims)
    return lambda images: (images.reshape(len(images), -1).astype(np.float64) - mean) @ basis


class MlpJudge:
    """The fully connected classifier: called, its 64-unit hidden layer's features (an Embed);
    `classify`, its predicted labels, for a class agreement that is not the project CNN's."""

    def __init__(self, train: np.ndarray, labels: np.ndarray, batch: int = 256) -> None:
        torch.manual_seed(MLP_SEED)
        self.body = nn.Sequential(
            nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU()
        )
        self.net = nn.Sequential(self.body, nn.Linear(64, 10))
        optimizer = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        x = torch.from_numpy(train.astype(np.float32))
        y = torch.from_numpy(labels.astype(np.int64))
        for _ in range(MLP_EPOCHS):
            for index in torch.randperm(len(x)).split(batch):
                loss = nn.functional.cross_entropy(self.net(x[index]), y[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        self.net.eval()

    @torch.no_grad()
    def _apply(self, module: nn.Module, images: np.ndarray) -> torch.Tensor:
        return torch.cat(
            [
                module(torch.from_numpy(np.ascontiguousarray(images[f : f + 2000], np.float32)))
                for f in range(0, len(images), 2000)
            ]
        )

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self._apply(self.body, images).double().numpy()

    def classify(self, images: np.ndarray) -> np.ndarray:
        return self._apply(self.net, images).argmax(-1).numpy()


def second_embeds(train: np.ndarray, labels: np.ndarray) -> dict[str, Embed]:
    """Both feature sets, fitted on the training split."""
    return {"pca": pca_embed(train), "mlp": MlpJudge(train, labels)}
