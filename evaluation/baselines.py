"""Simple completion methods the models are judged against, fitted on the training split.

- mean training image: every generated row is the mean training image's row;
- ridge regression: the unknown rows as a linear function of the known rows (closed form, the
  regularisation chosen on a held-out slice of the training images);
- nearest neighbours: the mean of the training images closest to the known rows (Euclidean).

numpy only. Each returns completions shaped like `images`, (N, 28, 28) float32: rows < k copied,
rows >= k predicted. Used by `python -m evaluation.evaluate`.
"""

from __future__ import annotations

import numpy as np

LAMBDAS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)  # ridge strengths tried on the held-out slice
HOLDOUT = 0.1  # fraction of the training images held out to choose the ridge strength


def _filled(images: np.ndarray, k: int, generated: np.ndarray) -> np.ndarray:
    """images with rows k..27 replaced by `generated` ((N, 28 - k, 28) or broadcastable)."""
    out = images.astype(np.float32, copy=True)
    out[:, k:] = generated
    return out


def _flat_rows(images: np.ndarray, rows: slice) -> np.ndarray:
    return images[:, rows].reshape(len(images), -1)  # (N, rows * 28)


def mean_image(train: np.ndarray, images: np.ndarray, k: int) -> np.ndarray:
    return _filled(images, k, train[:, k:].mean(0, dtype=np.float64))


def _moments(x: np.ndarray, y: np.ndarray, chunk: int = 8192) -> tuple[np.ndarray, ...]:
    """Means and centred Gram matrices x'x, x'y, summed in float64 a chunk at a time (so no
    full float64 copy of x is made). x (N, D), y (N, E)."""
    x_mean = x.mean(0, dtype=np.float64)  # (D,)
    y_mean = y.mean(0, dtype=np.float64)  # (E,)
    xtx = np.zeros((x.shape[1], x.shape[1]))  # (D, D)
    xty = np.zeros((x.shape[1], y.shape[1]))  # (D, E)
    for first in range(0, len(x), chunk):
        xc = x[first : first + chunk] - x_mean  # (chunk, D) float64
        xtx += xc.T @ xc
        xty += xc.T @ (y[first : first + chunk] - y_mean)
    return x_mean, y_mean, xtx, xty


def _solve(moments: tuple[np.ndarray, ...], lam: float) -> tuple[np.ndarray, np.ndarray]:
    x_mean, y_mean, xtx, xty = moments
    w = np.linalg.solve(xtx + lam * np.eye(len(xtx)), xty)  # (D, E)
    return w, y_mean - x_mean @ w


def fit_ridge(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """W (D, E), b (E,) minimising |x W + b - y|² + lam |W|²; the intercept is not penalised."""
    return _solve(_moments(x, y), lam)


def choose_lambda(train: np.ndarray, k: int, lambdas: tuple[float, ...] = LAMBDAS) -> float:
    """The strength with the lowest MSE on the last HOLDOUT of the training images."""
    cut = len(train) - max(1, int(len(train) * HOLDOUT))
    x, y = _flat_rows(train, slice(0, k)), _flat_rows(train, slice(k, None))
    moments = _moments(x[:cut], y[:cut])
    errors = []
    for lam in lambdas:
        w, b = _solve(moments, lam)
        errors.append(float(np.mean((x[cut:] @ w + b - y[cut:]) ** 2)))
    return lambdas[int(np.argmin(errors))]


def ridge(train: np.ndarray, images: np.ndarray, k: int, lam: float) -> np.ndarray:
    """Fit on all training images with strength `lam`, then predict rows k..27 of `images`."""
    w, b = fit_ridge(_flat_rows(train, slice(0, k)), _flat_rows(train, slice(k, None)), lam)
    predicted = _flat_rows(images, slice(0, k)) @ w + b  # (N, (28 - k) * 28)
    return _filled(images, k, predicted.reshape(len(images), -1, images.shape[2]))


def nearest(train: np.ndarray, queries: np.ndarray, n: int, chunk: int = 256) -> np.ndarray:
    """Indices (Q, n) of the n training vectors closest to each query, nearest first.

    train (N, D), queries (Q, D). |t - q|² = |t|² - 2 q·t + |q|², and |q|² is the same for every
    t, so ranking needs only |t|² - 2 q·t: one matmul per chunk of queries.
    """
    train_sq = np.einsum("nd,nd->n", train, train)  # (N,)
    found = np.empty((len(queries), n), np.int64)
    for first in range(0, len(queries), chunk):
        q = queries[first : first + chunk]
        dist = train_sq[None, :] - 2.0 * (q @ train.T)  # (chunk, N)
        top = np.argpartition(dist, n - 1, axis=1)[:, :n]  # (chunk, n), unordered
        order = np.argsort(np.take_along_axis(dist, top, axis=1), axis=1)
        found[first : first + chunk] = np.take_along_axis(top, order, axis=1)
    return found


def nearest_mean(train: np.ndarray, images: np.ndarray, k: int, n: int = 10) -> np.ndarray:
    """Rows k..27 as the mean of the n training images nearest by rows 0..k-1."""
    n = min(n, len(train))
    index = nearest(_flat_rows(train, slice(0, k)), _flat_rows(images, slice(0, k)), n)
    return _filled(images, k, train[index, k:].mean(1))  # (N, n, 28-k, 28) -> (N, 28-k, 28)
