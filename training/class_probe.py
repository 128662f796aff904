"""A linear probe of the class from the frozen core's state (multinomial logistic regression).

The rollout stage's class score (training.rollout_loop, `RolloutRecipe.classes`) reads drawn
completions through it, and evaluation.class_drift reads completions through probes fitted the
same way. Fitted full-batch with Adam on standardised features; no command of its own.
"""

from __future__ import annotations

import torch
from torch import nn

PROBE_EPOCHS = 400  # full-batch Adam steps: the training accuracy has levelled off by then
PROBE_LR = 1e-2


class ClassProbe(nn.Module):
    """logits = W (x - mean) / std + b, for features x (..., D)."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.linear = nn.Linear(len(mean), classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear((x.float() - self.mean) / self.std)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self(x).argmax(-1)


def fit_class_probe(features: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> ClassProbe:
    """A probe of `labels` (N,) from `features` (N, D), fitted on all of them; its weights are
    left frozen (requires_grad False), so gradients through it reach only what it reads."""
    features = features.float()
    with torch.random.fork_rng():  # the seed starts this probe alone, not the caller's draws
        torch.manual_seed(seed)
        probe = ClassProbe(features.mean(0), features.std(0) + 1e-6, int(labels.max()) + 1)
    opt = torch.optim.Adam(probe.parameters(), PROBE_LR, weight_decay=1e-5)
    for _ in range(PROBE_EPOCHS):
        opt.zero_grad()
        nn.functional.cross_entropy(probe(features), labels.long()).backward()
        opt.step()
    return probe.requires_grad_(False).eval()
