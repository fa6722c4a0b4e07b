"""Figures for plots that stay cheap at a hundred million values: per-bin quantiles from log-bucket counts
(within loghist.RELATIVE_ERROR), CDF curves from a uniform sample. summary.json never uses these."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import loghist


def binned_quantiles(t: np.ndarray, buckets: np.ndarray, bin_s: float, qs: dict[str, float],
                     weights: np.ndarray | None = None) -> pd.DataFrame:
    """Per time bin of `bin_s` seconds: quantiles of values given by their loghist buckets (2-D bincounts, a
    chunk of values at a time: the int64 keys of ninety million values would need gigabytes at once)."""
    if not len(t):
        return pd.DataFrame(columns=list(qs), dtype=np.float64)
    lo = int(np.floor(float(np.min(t)) / bin_s))
    n_bins = int(np.floor(float(np.max(t)) / bin_s)) - lo + 1
    grid = np.zeros(n_bins * loghist.BUCKETS)
    for a in range(0, len(t), loghist.CHUNK):
        b = np.floor(np.asarray(t[a: a + loghist.CHUNK], np.float64) / bin_s).astype(np.int64) - lo
        grid += np.bincount(b * loghist.BUCKETS + buckets[a: a + loghist.CHUNK],
                            weights=None if weights is None else weights[a: a + loghist.CHUNK],
                            minlength=grid.size)
    per_bin = grid.reshape(n_bins, loghist.BUCKETS)
    keep = per_bin.sum(axis=1) > 0
    values = loghist.quantiles(per_bin[keep], list(qs.values()))
    return pd.DataFrame(values, columns=list(qs), index=(np.arange(n_bins)[keep] + lo) * bin_s)


SAMPLE_LIMIT = 2_000_000


def sample_cdf(values: np.ndarray, points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most `points` points of the empirical CDF, always including the min and the max. Above SAMPLE_LIMIT
    values the curve is drawn from a uniform sample of that many (plus the extremes): the same curve to the eye,
    without sorting a hundred million values."""
    nan = np.isnan(values)
    v = values[~nan] if nan.any() else values  # read only below: no copy of the caller's values
    if v.size > SAMPLE_LIMIT:
        pick = np.random.default_rng(0).integers(0, v.size, SAMPLE_LIMIT)
        v = np.concatenate((v[pick], [v.min(), v.max()]))
    v = np.sort(v)
    idx = np.unique(np.linspace(0, v.size - 1, min(v.size, points)).astype(np.int64))
    return v[idx], (idx + 1) / v.size
