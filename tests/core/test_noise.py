"""The seeded noise generator (rowgen.sampling, rowgen-normal/1): standard normal, reproducible,
sample j independent of how many are drawn, and pinned values that guard the spec.

tests/web/ checks that web/sampling.js, the same generator in JavaScript, gives the same floats.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from rowgen import contract, sampling
from rowgen.sampling import draw_noise, standard_normal

DRAWS = 100_000
# Kolmogorov-Smirnov: sqrt(n) * D exceeds 1.95 with probability 0.001 for a true N(0, 1) sample.
KS_LIMIT = 1.95


def ks_statistic(values: np.ndarray) -> float:
    """sqrt(n) * the largest gap between the empirical CDF and the standard normal's."""
    ordered = np.sort(values.astype(np.float64))
    n = len(ordered)
    cdf = 0.5 * (1.0 + np.vectorize(math.erf)(ordered / math.sqrt(2.0)))
    above = np.arange(1, n + 1) / n - cdf
    below = cdf - np.arange(n) / n
    return math.sqrt(n) * float(max(above.max(), below.max()))


@pytest.mark.parametrize("seed", [0, 1, 2**32, 2**63 - 1])
def test_draws_are_standard_normal(seed: int) -> None:
    z = standard_normal(seed, 0, DRAWS).astype(np.float64)
    se = 1 / math.sqrt(DRAWS)  # the standard error of the mean; of the std about se / sqrt(2)
    assert abs(z.mean()) < 4 * se, f"seed {seed}: mean {z.mean():.4f}"
    assert abs(z.std() - 1) < 4 * se, f"seed {seed}: std {z.std():.4f}"
    skew = float(((z - z.mean()) ** 3).mean() / z.std() ** 3)
    kurtosis = float(((z - z.mean()) ** 4).mean() / z.std() ** 4)
    assert abs(skew) < 4 * math.sqrt(6 / DRAWS), f"seed {seed}: skewness {skew:.4f}"
    assert abs(kurtosis - 3) < 4 * math.sqrt(24 / DRAWS), f"seed {seed}: kurtosis {kurtosis:.4f}"
    assert (ks := ks_statistic(z)) < KS_LIMIT, f"seed {seed}: KS sqrt(n) D = {ks:.3f}"
    assert np.isfinite(z).all() and np.abs(z).max() < sampling.NOISE_LIMIT


def test_neighbours_and_seeds_are_uncorrelated() -> None:
    z = standard_normal(7, 0, DRAWS)
    limit = 4 / math.sqrt(DRAWS)
    noise_dim = 28
    for lag in (1, 2, noise_dim, contract.SAMPLE_STEPS * noise_dim):  # next value, row, sample
        r = float(np.corrcoef(z[:-lag], z[lag:])[0, 1])
        assert abs(r) < limit, f"values {lag} apart correlate: {r:.4f}"
    for other in (8, 7 + 2**32, 7 ^ 1):  # the next seed, the high word, one bit of the low word
        r = float(np.corrcoef(z, standard_normal(other, 0, DRAWS))[0, 1])
        assert abs(r) < limit, f"seeds 7 and {other} correlate: {r:.4f}"
    squares = float(np.corrcoef(z[:-1] ** 2, z[1:] ** 2)[0, 1])  # a dependence beyond linear
    assert abs(squares) < limit, f"squares of neighbours correlate: {squares:.4f}"


def test_a_seed_gives_one_array_and_seeds_differ() -> None:
    first = draw_noise(5, 4, 28)
    assert first.dtype == np.float32 and first.shape == (4, contract.SAMPLE_STEPS, 28)
    assert np.array_equal(first, draw_noise(5, 4, 28))
    seeds = [draw_noise(s, 1, 28) for s in (0, 1, 2, 5, 2**32, 2**63 - 1)]
    for i, a in enumerate(seeds):
        for b in seeds[i + 1 :]:
            assert np.mean(a == b) < 0.01, "two seeds give the same values"


def test_sample_j_does_not_depend_on_how_many_are_drawn() -> None:
    eight = draw_noise(11, 8, 28)
    for j in range(8):
        assert np.array_equal(draw_noise(11, j + 1, 28)[j], eight[j]), f"sample {j} changed"
        alone = standard_normal(11, j * contract.SAMPLE_STEPS * 28, contract.SAMPLE_STEPS * 28)
        assert np.array_equal(alone.reshape(contract.SAMPLE_STEPS, 28), eight[j])


# Computed once with the generator as docs/contract.md states it: a change here changes the
# samples of every seed in every runtime, so it is a new NOISE_ALGORITHM, not an edit.
PINNED = {  # (seed, start) -> the float32 values start, start + 1, start + 2
    (0, 0): [-0.16495734453201294, 1.0445753335952759, -0.22595557570457458],
    (5, 100): [-0.7690858840942383, -2.054798126220703, -1.1275160312652588],
    (2**32 + 7, 6047): [0.6692721247673035, 0.551984965801239, 1.4668303728103638],
    (2**63 - 1, 0): [0.9643058180809021, -1.2756773233413696, -1.7352510690689087],
}


def test_pinned_values() -> None:
    assert sampling.NOISE_ALGORITHM == "rowgen-normal/1"
    words = sampling._mix(np.array([0, 1, 0x9E3779B9, 0xFFFFFFFF], np.uint32))
    assert words.tolist() == [0, 1753845952, 33350994, 1734902346], "lowbias32 changed"
    for (seed, start), values in PINNED.items():
        got = standard_normal(seed, start, 3).tolist()
        assert got == values, f"seed {seed}, values {start}..: {got} != {values}"


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="seed must be a whole number from 0 to 2\\*\\*64 - 1"):
        draw_noise(-1, 1, 4)
    with pytest.raises(ValueError, match="seed"):
        draw_noise(2**64, 1, 4)
    with pytest.raises(TypeError):
        draw_noise(1.5, 1, 4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="samples and noise_dim"):
        draw_noise(0, 0, 4)
    with pytest.raises(ValueError, match="stream holds values"):
        standard_normal(0, sampling.MAX_VALUES - 1, 2)
