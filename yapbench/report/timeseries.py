"""Per-time-bin aggregates of a run, for the time-series plots (vectorised: one groupby or bincount per series).

Per-session series are exact quantiles per bin; the per-word and per-frame ones (tens of millions of values in a
long run) are estimated from log-bucket counts, within 1 % (report.bulk)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pandas as pd

from .. import loghist
from .bulk import binned_quantiles
from .load import RunData

MAX_BINS = 300  # enough to see a ramp, few enough that each bin holds a percentile's worth of values


@dataclass
class TimeSeries:
    bin_s: float  # width of one bin, seconds
    start: float  # epoch seconds of time 0
    active: pd.DataFrame  # index: seconds since start; active (served sessions open), used_slots when polled
    first_word: pd.DataFrame  # p50, p95 of sessions by start time
    word_lag: pd.DataFrame  # p50, p95, p99 of words by arrival time (estimates within 1 %)
    backlog: pd.DataFrame  # p50, p95, max of sessions' backlog_max_ms by end time
    rejections: pd.Series  # rejected sessions per second
    send_lag: pd.DataFrame  # p50, p99, max per bin (estimates within 1 %)
    gpu: pd.DataFrame | None  # per GPU: t, host, gpu, util_pct, mem_used_mib, power_w
    server: pd.DataFrame | None  # per target and scrape: t, target, step_p50_ms, step_p99_ms, open_channels


def bin_width(duration_s: float) -> float:
    return float(max(1.0, np.ceil(duration_s / MAX_BINS)))


def build(run: RunData) -> TimeSeries:
    bin_s = bin_width(run.duration_s)
    s = run.sessions
    served = s[s["served"]]
    grid = run.start + np.arange(0.0, run.duration_s + bin_s, bin_s)
    active = pd.DataFrame({"active": active_at(served, grid)}, index=grid - run.start)
    if run.server is not None:
        used = _slots(run.server, run.start, bin_s)
        active = active.join(used.rename("used_slots"), how="outer")
    rejected = s[s["outcome"] == "rejected"]["started_at"].to_numpy() - run.start
    n_bins = len(grid)
    rej = np.bincount(np.clip((rejected // bin_s).astype(np.int64), 0, n_bins - 1), minlength=n_bins) / bin_s
    gpu = None
    if run.gpu is not None:
        gpu = run.gpu.assign(t=run.gpu["t"] - run.start, host=run.gpu["host"].fillna(""))[
            ["t", "host", "gpu", "util_pct", "mem_used_mib", "power_w"]]
    return TimeSeries(
        bin_s=bin_s,
        start=run.start,
        active=active,
        first_word=_quantiles(served["started_at"].to_numpy() - run.start, served["first_word_ms"], bin_s,
                              {"p50": 0.5, "p95": 0.95}),
        word_lag=binned_quantiles(run.words["t"].to_numpy(), loghist.bucket_of(run.words["lag_ms"]),
                                  bin_s, {"p50": 0.5, "p95": 0.95, "p99": 0.99}),
        backlog=_quantiles(served["ended_at"].to_numpy() - run.start, served["backlog_max_ms"], bin_s,
                           {"p50": 0.5, "p95": 0.95, "max": 1.0}),
        rejections=pd.Series(rej, index=np.arange(n_bins) * bin_s),
        send_lag=run.send_lag.per_bin(run.start, bin_s, {"p50": 0.5, "p99": 0.99, "max": 1.0}),
        gpu=gpu,
        server=None if run.server_metrics is None else run.server_metrics.assign(t=run.server_metrics["t"] - run.start)[
            ["t", "target", "step_p50_ms", "step_p99_ms", "open_channels"]],
    )


def each_gpu(gpu: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """(label, its rows) per GPU: "gpu 0", or "HOST gpu 0" once the GPUs are on more than one host."""
    several = gpu["host"].nunique() > 1
    for (host, idx), g in gpu.groupby(["host", "gpu"], sort=True):
        yield (f"{host} gpu {idx}" if several else f"gpu {idx}"), g


def active_at(sessions: pd.DataFrame, times: np.ndarray) -> np.ndarray:
    """Sessions open at each time: started at or before it, not yet ended."""
    starts = np.sort(sessions["started_at"].to_numpy())
    ends = np.sort(sessions["ended_at"].to_numpy())
    return np.searchsorted(starts, times, "right") - np.searchsorted(ends, times, "right")


def _bins(t: np.ndarray, bin_s: float) -> np.ndarray:
    return np.floor(t / bin_s) * bin_s


def _slots(server: pd.DataFrame, start: float, bin_s: float) -> pd.Series:
    """Used slots per bin, summed over the targets (each target's mean within the bin). A missing poll is missing
    data, not zero slots: a bin where a target has no row (carried over from the bin before at most, for cadence
    jitter) has no total, so a target that times out leaves a gap instead of a dip to the other targets' sum."""
    bins = _bins(server["t"].to_numpy() - start, bin_s)
    per_target = server.groupby([bins, server["target"].to_numpy()])["used_slots"].mean().unstack()
    lo, hi = per_target.index.min(), per_target.index.max()
    grid = lo + bin_s * np.arange(round((hi - lo) / bin_s) + 1)
    per_target = per_target.reindex(grid).ffill(limit=1)
    return per_target.sum(axis=1, min_count=per_target.shape[1])


def _quantiles(t: np.ndarray, values: pd.Series | np.ndarray, bin_s: float, qs: dict[str, float]) -> pd.DataFrame:
    v = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(v)
    if not ok.any():
        return pd.DataFrame(columns=list(qs), dtype=np.float64)
    grouped = pd.Series(v[ok]).groupby(_bins(np.asarray(t, np.float64)[ok], bin_s))
    out = grouped.quantile(list(qs.values())).unstack()
    out.columns = list(qs)
    return out
