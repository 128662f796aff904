"""Noise for sampled completions: standard normal draws from a seed, the same in every runtime.

Torch-free numpy, used by the app, the API and the evaluation. `web/sampling.js` is the same
generator in JavaScript (the in-browser page and the Node.js examples import it), and
docs/contract.md ("Noise from a seed") states it for any other runtime. The generator,
NOISE_ALGORITHM, is counter based: value i of a seed's stream is a function of (seed, i) alone,
computed with 32-bit integer arithmetic and float64 log, cos and sqrt, so Python and JavaScript
give the same float32 numbers:

1. The seed, an integer 0 <= seed < 2**64, splits into two 32-bit words:
   lo = seed mod 2**32 and hi = seed // 2**32.
2. Value i (0 <= i < 2**31) takes two 32-bit words, from the counters n = 2i and n = 2i + 1:
   bits(n) = mix(mix(mix(n XOR 0x9E3779B9) XOR lo) XOR hi), where mix is the lowbias32 hash:
   x ^= x >> 16; x *= 0x7FEB352D; x ^= x >> 15; x *= 0x846CA68B; x ^= x >> 16
   (>> a logical shift, * modulo 2**32).
3. Each word w becomes a uniform u = (w + 0.5) / 2**32 in float64 (exact), inside (0, 1).
4. Box-Muller in float64: z = sqrt(-2 * log(u1)) * cos(2π * u2), u1 from counter 2i and u2 from
   2i + 1, 2π the float64 product 2 * π (then times u2); z rounded to the nearest float32.

`draw_noise(seed, samples, noise_dim)` lays the stream out as (samples, 27, noise_dim): the value
of sample j, row slice t, dimension d is value (j * 27 + t) * noise_dim + d, so sample j is the
same whether 1 or 8 samples are drawn. Seed 0's stream begins -0.16495734, 1.0445753,
-0.22595558 (tests/core/test_noise.py pins more). log and cos are the platform's float64
functions; those within an ulp of the true value round to the same float32 except where z lies
within an ulp of halfway between two float32s (rarer than once in 10**9 values).
"""

from __future__ import annotations

import math
import operator

import numpy as np

from rowgen import contract

NOISE_ALGORITHM = "rowgen-normal/1"
SEED_LIMIT = 2**64  # seeds are unsigned 64-bit integers: 0 <= seed < SEED_LIMIT
MAX_SEED = 2**63 - 1  # what the app, the page and the Node.js examples accept (an int64)
MAX_VALUES = 2**31  # values per seed: counters 2i and 2i + 1 stay 32-bit words
COUNTER_KEY = 0x9E3779B9  # xored into the counter first, so counter 0 does not hash to 0
MIX_MULTIPLIERS = (0x7FEB352D, 0x846CA68B)  # lowbias32's (Wellons, hash-prospector)
TWO_PI = 2 * math.pi

MAX_SAMPLES = 8  # samples per request in the app and the API
MAX_TEMPERATURE = 2.0  # beyond this the samples are noise; the app and API refuse more
# Noise a server accepts: standard normal draws beyond 10 have probability < 1e-22 (this
# generator's never pass sqrt(-2 log(2**-33)) = 6.77).
NOISE_LIMIT = 10.0


def _mix(x: np.ndarray) -> np.ndarray:
    """lowbias32 on a uint32 array: a bijection of 32-bit words; products wrap modulo 2**32."""
    first, second = (np.uint32(m) for m in MIX_MULTIPLIERS)
    x = x ^ (x >> np.uint32(16))
    x = x * first
    x = x ^ (x >> np.uint32(15))
    x = x * second
    return x ^ (x >> np.uint32(16))


def _words(seed: int) -> tuple[np.uint32, np.uint32]:
    seed = operator.index(seed)
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"seed must be a whole number from 0 to 2**64 - 1, got {seed}")
    return np.uint32(seed & 0xFFFFFFFF), np.uint32(seed >> 32)


def _uniform(counters: np.ndarray, lo: np.uint32, hi: np.uint32) -> np.ndarray:
    """float64 uniforms in (0, 1), one per uint32 counter (steps 2 and 3)."""
    bits = _mix(_mix(_mix(counters ^ np.uint32(COUNTER_KEY)) ^ lo) ^ hi)
    return (bits.astype(np.float64) + 0.5) / 2.0**32


def standard_normal(seed: int, start: int, count: int) -> np.ndarray:
    """Values start..start + count - 1 of the seed's stream, float32 (count,)."""
    lo, hi = _words(seed)
    if start < 0 or count < 0 or start + count > MAX_VALUES:
        raise ValueError(
            f"values {start}..{start + count - 1} of a seed's stream: the stream holds values "
            f"0..{MAX_VALUES - 1}"
        )
    index = np.arange(start, start + count, dtype=np.uint32)
    u1 = _uniform(index * np.uint32(2), lo, hi)
    u2 = _uniform(index * np.uint32(2) + np.uint32(1), lo, hi)
    return (np.sqrt(-2.0 * np.log(u1)) * np.cos(TWO_PI * u2)).astype(np.float32)


def draw_noise(seed: int, samples: int, noise_dim: int) -> np.ndarray:
    """(samples, 27, noise_dim) float32 standard normal draws; the same seed, the same array."""
    if samples < 1 or noise_dim < 1:
        raise ValueError(f"samples and noise_dim must be >= 1, got {samples}, {noise_dim}")
    shape = (samples, contract.SAMPLE_STEPS, noise_dim)
    return standard_normal(seed, 0, math.prod(shape)).reshape(shape)
