"""Sampled completions for the app and the `/complete` endpoint: checked options, seeded noise.

Torch-free. The same model, image, options and seed give the same samples on every call.
"""

from __future__ import annotations

import math

import numpy as np

from rowgen.sampling import MAX_SAMPLES, MAX_SEED, MAX_TEMPERATURE, draw_noise
from serve.runtime import Model, ModelSet


def check_sampling(samples: object, temperature: object, seed: object) -> tuple[int, float, int]:
    """Samples 1..8, temperature 0..2 and a seed >= 0, or ValueError saying what is allowed."""
    values: list[float | int] = []
    for name, value, lo, hi, whole in (
        ("samples", samples, 1, MAX_SAMPLES, True),
        ("temperature", temperature, 0.0, MAX_TEMPERATURE, False),
        ("seed", seed, 0, MAX_SEED, True),
    ):
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            number = math.nan
        if not (lo <= number <= hi and (number.is_integer() or not whole)):
            kind = "a whole number" if whole else "a number"
            raise ValueError(f"{name} must be {kind} from {lo} to {hi}, got {value!r}")
        values.append(int(number) if whole else number)
    return int(values[0]), float(values[1]), int(values[2])


def draw_samples(
    model: Model, models: ModelSet, image: np.ndarray, k: int, n: int, temp: float, seed: int
) -> np.ndarray:
    """(n, 28, 28): n sampled completions of one (28, 28) image; ValueError for a mean-only
    model, naming the loaded models that can sample."""
    if not model.config.stochastic:
        can = [name for name in models.names if models.models[name].config.stochastic]
        raise ValueError(
            f"model {model.name!r} gives only the mean completion: choose 'mean', or a "
            f"model that samples ({', '.join(can) or 'none is loaded'})"
        )
    noise = draw_noise(seed, n, model.config.noise_dim)
    batch = np.repeat(image[None], n, axis=0)
    return model.sample(batch, np.full(n, k), noise, np.full(n, temp, np.float32))
