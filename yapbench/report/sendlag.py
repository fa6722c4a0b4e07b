"""The generator's send lag of a run: exact from the raw per-frame values, or estimated from the per-second
log-bucketed histogram (yapbench.loghist, within 1 %) when the run sent more frames than the raw file keeps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import loghist, runlog
from ..metrics import summarize
from .bulk import binned_quantiles, sample_cdf


@dataclass
class SendLag:
    raw: np.ndarray | None  # runlog.SEND_LAG_DTYPE records: every frame, exact figures
    hist: np.ndarray | None  # else runlog.SEND_LAG_HIST_DTYPE records (t: epoch second)

    @classmethod
    def read(cls, run_dir, meta: dict) -> "SendLag":
        if runlog.raw_capped(meta):
            return cls(None, runlog.read_send_lag_hist(run_dir))
        return cls(runlog.read_send_lag(run_dir), None)

    @property
    def exact(self) -> bool:
        return self.raw is not None

    @property
    def _hist(self) -> np.ndarray:
        """The histogram, for the branches without raw values (one of the two is always there)."""
        if self.hist is None:
            raise ValueError("SendLag holds neither raw values nor a histogram")
        return self.hist

    @property
    def size(self) -> int:
        return int(self.raw.size if self.raw is not None else self._hist["count"].sum(dtype=np.int64))

    def window(self, lo: float, hi: float) -> "SendLag":
        """Frames sent in [lo, hi) (epoch seconds); the histogram keeps whole seconds that start in it."""
        if self.raw is not None:
            return SendLag(self.raw[(self.raw["t"] >= lo) & (self.raw["t"] < hi)], None)
        t = self._hist["t"].astype(np.float64)
        return SendLag(None, self._hist[(t >= np.floor(lo)) & (t < hi)])

    def counts(self) -> np.ndarray:
        """Bucket counts of all frames (raw values are bucketed on the fly)."""
        if self.raw is not None:
            return np.bincount(loghist.bucket_of(self.raw["lag_ms"]), minlength=loghist.BUCKETS)
        return np.bincount(self._hist["bucket"], weights=self._hist["count"], minlength=loghist.BUCKETS)

    def stats(self) -> dict:
        """summary.json's send_lag: count, min, mean, max, percentiles, and `exact` (false: estimates within 1 %)."""
        if self.raw is not None:
            figures = summarize(self.raw["lag_ms"])
        else:
            c = self.counts()
            mean = loghist.mean(c)
            if mean is None:  # no frames
                return {"count": 0, "exact": False}
            qs = loghist.quantiles(c, [0.0, 0.5, 0.9, 0.95, 0.99, 1.0])
            figures = {"count": float(c.sum()), "min": qs[0], "mean": mean, "max": qs[5],
                       "p50": qs[1], "p90": qs[2], "p95": qs[3], "p99": qs[4]}
        out: dict = {k: float(v) for k, v in figures.items()}
        out["count"] = int(out.get("count", 0))
        out["exact"] = self.exact
        return out

    def late(self, limit_ms: float) -> int:
        """Frames sent later than limit_ms (exact also from the histogram: loghist.EDGE_MS is an edge)."""
        if self.raw is not None:
            return int((self.raw["lag_ms"] > limit_ms).sum())
        return int(self.counts()[loghist.bucket_of(np.array([limit_ms]))[0]:].sum())

    def per_bin(self, start: float, bin_s: float, qs: dict[str, float]) -> pd.DataFrame:
        """Quantiles per time bin (index: bin start, seconds since `start`), estimated from bucket counts."""
        if self.raw is not None:
            t, buckets, weights = self.raw["t"], loghist.bucket_of(self.raw["lag_ms"]), None
        else:
            t, buckets, weights = self._hist["t"].astype(np.float64), self._hist["bucket"], self._hist["count"]
        return binned_quantiles(t - start, buckets, bin_s, qs, weights)

    def cdf(self, points: int) -> tuple[np.ndarray, np.ndarray]:
        """At most `points` points of the CDF (x in ms, y fraction <= x)."""
        if self.raw is not None:
            return sample_cdf(self.raw["lag_ms"], points)
        c = self.counts()
        keep = c > 0
        return loghist.VALUES[keep], np.cumsum(c)[keep] / c.sum()
