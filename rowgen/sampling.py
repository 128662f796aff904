"""Noise for sampled completions: standard normal draws from a seed, identical on every machine.

Torch-free (numpy's PCG64 generator), used by the app, the API and the evaluation. The draws
for sample i do not depend on how many samples are asked for: seed s gives the same first
sample whether 1 or 8 are drawn.
"""

from __future__ import annotations

import numpy as np

from rowgen import contract

MAX_SAMPLES = 8  # samples per request in the app and the API
MAX_TEMPERATURE = 2.0  # beyond this the samples are noise; the app and API refuse more


def draw_noise(seed: int, samples: int, noise_dim: int) -> np.ndarray:
    """(samples, 27, noise_dim) float32 standard normal draws; the same seed, the same array."""
    if samples < 1 or noise_dim < 1:
        raise ValueError(f"samples and noise_dim must be >= 1, got {samples}, {noise_dim}")
    rng = np.random.default_rng(seed)
    return rng.standard_normal((samples, contract.SAMPLE_STEPS, noise_dim), dtype=np.float32)
