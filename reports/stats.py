"""Bootstrap confidence intervals: percentile method, seeded, vectorised.

Every call draws from a fresh ``numpy.random.default_rng(seed)``, so an interval depends only on
its input values and the seed, not on what else was computed before it (reports are reproducible
and a row's CI does not change when another run is added to the leaderboard).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

N_RESAMPLES = 2000
CONFIDENCE = 0.95
SEED = 0
_CHUNK_ELEMENTS = 4_000_000  # bounds memory: resamples are drawn in chunks of this many indices


def clean(values: Sequence[float | None]) -> np.ndarray:
    """Finite floats only: records store NaN/Inf as null and a missing value is not a zero."""
    arr = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    return arr[np.isfinite(arr)]


def bootstrap_means(values: np.ndarray, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> np.ndarray:
    """Means of ``n_resamples`` resamples (with replacement) of ``values``."""
    x = np.asarray(values, dtype=float)
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK_ELEMENTS // max(n, 1))
    out = np.empty(n_resamples)
    for start in range(0, n_resamples, per_chunk):
        stop = min(n_resamples, start + per_chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = x[idx].mean(axis=1)
    return out


def bootstrap_ci(
    values: Sequence[float | None] | np.ndarray,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> tuple[float, float, float]:
    """(mean, low, high) of the mean of ``values`` with a percentile bootstrap interval.

    Non-finite values are dropped. No values: all NaN. A single value: the mean with a NaN
    interval, since one sample says nothing about spread.
    """
    x = clean(values)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan
    means = bootstrap_means(x, n_resamples, seed)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return mean, float(low), float(high)


def paired_bootstrap_ci(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = SEED,
) -> tuple[float, float, float]:
    """(mean of b - a, low, high): samples are resampled as pairs, which keeps the per-sample
    difficulty shared by both runs out of the interval."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in length: {a.shape} vs {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    return bootstrap_ci(b[keep] - a[keep], n_resamples, confidence, seed)
