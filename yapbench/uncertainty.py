"""How sure a number of the summary is: bootstrap replicates from a run's raw records, and the confidence interval
of the difference between two runs. `yapbench compare` tables them; the gates' regressions use them so that a
difference inside the noise does not fail a build.

Replicates are computed without materialising resamples, so a million word lags cost as little as forty:
- a percentile (numpy's linear interpolation between order statistics k and k+1): in a resample of n values drawn
  from the empirical distribution, the (k+1)-th smallest is x[ceil(n U) - 1] with U the (k+1)-th smallest of n
  uniforms, U ~ Beta(k+1, n-k), and the next one's uniform is U + (1-U) Beta(1, n-k-1). Exact, O(B) after a sort.
- a mean or a rate: explicit resamples up to EXPLICIT_MAX values, else the normal limit (mean, sd/sqrt(n)).
- word metrics (word lag, end lag): the words of one session are correlated, so sessions are resampled with
  their words (a cluster bootstrap: multinomial session counts weight each word; CLUSTER_REPLICATES of them,
  chunked to bound memory); resampling words one by one would make the intervals far too narrow.
- a rate (ok, rejection, error): the Agresti-Caffo interval (one success and one failure added to each run, then
  the normal limit), which stays honest at 0 of 40 where a bootstrap of all-zero outcomes has no spread at all.
- WER (errors / reference words over sessions): resampled by session, the same way (ratio of sums).

The generator is seeded (one stream per run compared, so their resamples are independent): the same runs give
the same intervals, and a gate never flips when it is evaluated again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .slo import MetricPath
from .report.load import RunData
from .metricdefs import SESSION_METRICS, WORD_METRICS
from .report.schema import SEND_LAG_METRIC, TARGETS

REPLICATES = 2000
CLUSTER_REPLICATES = 500
CLUSTER_CHUNK = 4_000_000  # words x replicates per numpy step (~32 MB of int64)
EXPLICIT_MAX = 4000  # resample explicitly up to this many values (B x n stays ~10^7), else the normal limit
SEED = 20251130

@dataclass(frozen=True)
class Interval:
    lo: float
    hi: float
    confidence: float

    @property
    def significant(self) -> bool:
        """The interval of a difference excludes zero."""
        return self.lo > 0 or self.hi < 0


def quantile_replicates(values: np.ndarray, q: float, rng: np.random.Generator, b: int = REPLICATES) -> np.ndarray:
    x = np.sort(values)
    n = x.size
    h = (n - 1) * q
    k = int(np.floor(h))
    frac = h - k
    u = rng.beta(k + 1, n - k, size=b)
    lower = x[np.clip(np.ceil(n * u).astype(np.int64) - 1, 0, n - 1)]
    if frac == 0 or k + 1 >= n:
        return lower
    v = u + (1.0 - u) * rng.beta(1, n - k - 1, size=b)
    upper = x[np.clip(np.ceil(n * v).astype(np.int64) - 1, 0, n - 1)]
    return lower + frac * (upper - lower)


def mean_replicates(values: np.ndarray, rng: np.random.Generator, b: int = REPLICATES) -> np.ndarray:
    n = values.size
    if n <= EXPLICIT_MAX:
        return values[rng.integers(0, n, size=(b, n))].mean(axis=1)
    return values.mean() + values.std(ddof=1) / np.sqrt(n) * rng.standard_normal(b)


def clustered_quantile_replicates(values: np.ndarray, clusters: np.ndarray, q: float, rng: np.random.Generator,
                                  b: int = CLUSTER_REPLICATES) -> np.ndarray:
    """The q-quantile (inverted CDF) of resamples that draw whole clusters (sessions) with replacement.

    A replicate's quantile lies close to the observed one, so only a window of the sorted values around it is
    weighted word by word; everything below the window counts through one product of the session counts with each
    session's number of words below it. A replicate whose quantile falls outside the window is redone in full."""
    order = np.argsort(values, kind="stable")
    v = values[order]
    _, c = np.unique(clusters[order], return_inverse=True)
    m, n = int(c.max()) + 1, v.size
    sizes = np.bincount(c, minlength=m)
    half = max(2000, n // 50)
    lo, hi = max(0, int(q * n) - half), min(n, int(q * n) + half)
    below = np.bincount(c[:lo], minlength=m)
    out = np.empty(b)
    step = max(1, CLUSTER_CHUNK // max(hi - lo, 1))
    for start in range(0, b, step):
        k = min(step, b - start)
        draws = rng.integers(0, m, size=(k, m)) + (np.arange(k) * m)[:, None]
        counts = np.bincount(draws.ravel(), minlength=k * m).reshape(k, m)  # how often each session is drawn
        rank = np.ceil(q * (counts @ sizes))
        base = counts @ below
        cum = base[:, None] + np.cumsum(counts[:, c[lo:hi]], axis=1)
        idx = lo + (cum < rank[:, None]).sum(axis=1)
        for j in np.flatnonzero((base >= rank) | (idx >= hi)):  # outside the window: the whole sorted array
            full = np.cumsum(counts[j, c])
            idx[j] = int((full < rank[j]).sum())
        out[start:start + k] = v[np.minimum(idx, n - 1)]
    return out


def ratio_replicates(num: np.ndarray, den: np.ndarray, rng: np.random.Generator, b: int = REPLICATES) -> np.ndarray:
    n = num.size
    if n <= EXPLICIT_MAX:
        idx = rng.integers(0, n, size=(b, n))
        return num[idx].sum(axis=1) / den[idx].sum(axis=1)
    r = num.sum() / den.sum()
    se = np.sqrt(np.sum((num - r * den) ** 2)) / den.sum()  # the ratio's linearisation
    return r + se * rng.standard_normal(b)


def replicates(run: RunData, path: MetricPath, stream: int = 0, b: int = REPLICATES) -> np.ndarray | None:
    """Bootstrap replicates of the summary number at `path`, or None when it has none (counts, max, throughput,
    GPU readings) or the run has too few values (fewer than 2, or a percentile short of its tail). Runs compared
    with each other take different `stream`s: their resamples must be independent."""
    keys = path.keys
    sessions, words = run.sessions, run.words
    if keys[0] == TARGETS:
        mine = (sessions["target"] == keys[1]).to_numpy()
        words = words[mine[words["srow"].to_numpy()]] if len(words) else words
        sessions, keys = sessions[mine], keys[2:]
    rng = np.random.default_rng([SEED, stream])
    served = sessions["served"].to_numpy(dtype=bool)
    head = keys[0]
    if head in ("ok_rate", "rejection_rate", "error_rate"):
        return _rate(sessions, head, rng, b)
    if head == "wer":
        from .report import wer

        scored = sessions.join(wer.score_sessions(sessions, wer.references(run.meta)))
        scored = scored[scored["wer_ref_words"] > 0]
        if len(scored) < 2:
            return None
        return ratio_replicates(scored["wer_errors"].to_numpy(np.float64), scored["wer_ref_words"].to_numpy(np.float64),
                                rng, b)
    if head in SESSION_METRICS:
        values = sessions[served][SESSION_METRICS[head]].to_numpy(dtype=np.float64)
    elif head in WORD_METRICS:
        # words are of served sessions only (report.load): no filter needed
        values = words[WORD_METRICS[head]].to_numpy(dtype=np.float64)
        session_of = words["srow"].to_numpy()
        ok = ~np.isnan(values)
        return _clustered(values[ok], session_of[ok], path, rng)
    elif head == SEND_LAG_METRIC and path.keys[0] != TARGETS:
        values = send_lag_values(run)
    else:
        return None
    values = values[~np.isnan(values)]
    stat = keys[1]
    need = path.min_samples
    if need is not None:
        if values.size < max(need, 2):
            return None
        return quantile_replicates(values, int(stat[1:]) / 100.0, rng, b)
    if stat == "mean" and values.size >= 2:
        return mean_replicates(values, rng, b)
    return None


def _clustered(values: np.ndarray, sessions: np.ndarray, path: MetricPath,
               rng: np.random.Generator) -> np.ndarray | None:
    stat, need = path.keys[-1], path.min_samples
    if need is not None:
        if values.size < max(need, 2) or np.unique(sessions).size < 2:
            return None
        return clustered_quantile_replicates(values, sessions, int(stat[1:]) / 100.0, rng)
    if stat == "mean" and values.size >= 2:
        codes, c = np.unique(sessions, return_inverse=True)
        if codes.size < 2:
            return None
        return ratio_replicates(np.bincount(c, weights=values), np.bincount(c).astype(np.float64), rng)
    return None


def _rate(sessions: pd.DataFrame, name: str, rng: np.random.Generator, b: int) -> np.ndarray | None:
    from .metrics import NOT_ERRORS

    outcome = sessions["outcome"].astype(str)
    hit = {"ok_rate": outcome == "ok", "rejection_rate": outcome == "rejected",
           "error_rate": ~outcome.isin([str(o) for o in NOT_ERRORS])}[name].to_numpy(dtype=bool)
    if hit.size < 2:
        return None
    n = hit.size + 2
    p = (hit.sum() + 1) / n  # Agresti-Caffo: one success and one failure added
    return p + np.sqrt(p * (1 - p) / n) * rng.standard_normal(b)


def significance_between(run_dir: str | Path, baseline_dir: str | Path):  # -> gates.Significance
    """For the gates: path, confidence -> the interval of (run - baseline), both runs read once, on first use."""
    from .report.load import load_run

    loaded: dict[str, RunData] = {}

    def run(d: str | Path) -> RunData:
        if str(d) not in loaded:
            loaded[str(d)] = load_run(d)
        return loaded[str(d)]

    def significance(path: MetricPath, confidence: float) -> Interval | None:
        return difference(replicates(run(baseline_dir), path, 0), replicates(run(run_dir), path, 1), confidence)

    return significance


def difference(base: np.ndarray | None, other: np.ndarray | None, confidence: float = 0.95) -> Interval | None:
    """The percentile interval of `other - base` from independent replicates of each, or None without both."""
    if base is None or other is None:
        return None
    diff = other - base
    alpha = 1.0 - confidence
    lo, hi = np.quantile(diff, [alpha / 2, 1 - alpha / 2])
    return Interval(float(lo), float(hi), confidence)


def send_lag_values(run: RunData) -> np.ndarray:
    """The raw per-frame send lags; none when the run kept only the histogram (more frames than the raw file holds)."""
    raw = run.send_lag.raw
    return raw["lag_ms"].astype(np.float64) if raw is not None else np.zeros(0)
