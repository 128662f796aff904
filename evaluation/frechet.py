"""Fréchet distance between two sets of features, each summarised by its mean and covariance.

    d² = |mu_a - mu_b|² + tr(S_a + S_b - 2 (S_a S_b)^½)

as FID computes it with Inception features (here: evaluation.classifier's). numpy only. The matrix
square root's trace comes from a symmetric eigen-decomposition, tr (S_a S_b)^½ =
tr (S_a^½ S_b S_a^½)^½, which stays real and stable where a general `sqrtm` can return
complex noise for nearly singular covariances. Used by `python -m evaluation.evaluate`.
"""

from __future__ import annotations

import numpy as np


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of features (N, D), in float64."""
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need features shaped (N >= 2, D), got {x.shape}")
    return x.mean(0), np.cov(x, rowvar=False)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (negative rounding clipped)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(
    mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray
) -> float:
    """The Fréchet distance (squared, as FID reports it) between N(mu_a, cov_a), N(mu_b, cov_b)."""
    root_a = _sqrt_psd(cov_a)
    middle = root_a @ cov_b @ root_a  # symmetric PSD, same eigenvalues as cov_a @ cov_b
    cross = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0.0, None)).sum()
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * cross)
