"""Percentile bootstrap intervals over episodes.

Episodes are the independent units (steps of one episode share a memory), so intervals resample episodes:
draw ``n`` episodes with replacement ``resamples`` times, take the statistic of each draw, and report the
``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of those statistics.
"""

from __future__ import annotations

import numpy as np


def bootstrap_interval(values: np.ndarray, level: float = 0.95, resamples: int = 2000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` (NaNs dropped); ``(nan, nan)`` when none are left."""
    if not 0 < level < 1:
        raise ValueError(f"level={level}: expected a probability in (0, 1)")
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, values.size, size=(resamples, values.size))  # (resamples, n)
    means = values[draws].mean(axis=1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)
