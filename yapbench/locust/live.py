"""Live statistics for the web UI's STT tab, from the same records the run directory gets.

Bounded however long the test runs and however many streams it holds: values wait in the current interval
(INTERVAL_S) until it closes; closing computes that interval's exact percentiles (one chart point, from the raw
values) and keeps the raw values only as long as the table's window (TABLE_WINDOW_S) needs them. Chart points are
kept for the last POINTS_KEPT intervals. The whole test's exact figures are the report's, built at its stop.

The generator's send lag, one value per frame (12.5 a second per stream: 125,000 a second at 10,000 streams), is
counted in the log-bucketed histogram the run directory also keeps (loghist.py, within 1 %; its max exact)
instead: exact percentiles of that many values every 2 s would cost the recording process a tenth of a core.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Callable

import numpy as np

from .. import loghist
from ..metricdefs import GENERATOR_LAG_LIMIT_MS, METRICS, SEND_LAG, Metric, Source
from ..metrics import NOT_SERVED, PERCENTILES, summarize
from ..runlog import Batch, send_lags, word_values

LIVE_METRICS: tuple[Metric, ...] = tuple(m for m in METRICS if m.live)
RAW_METRICS = tuple(m for m in LIVE_METRICS if m.source != Source.FRAME)  # exact, from raw values
TABLE_METRICS = tuple(m.suffixed for m in LIVE_METRICS)  # the tab's row names and the snapshot's keys
INTERVAL_S = 2.0  # one chart point; the STT tab refreshes at the same period
# The table's percentiles cover the values recorded in the last 10 s (at 10,000 streams, ~250,000 word lags):
# recent enough to follow the load, cheap enough to recompute every 2 s (benchmarks/RESULTS.md, "Live STT tab").
TABLE_WINDOW_S = 10.0
POINTS_KEPT = 1800  # one hour of chart points
CHART_QUANTILES = {"first_word_ms": (50, 95, 99), "word_lag_ms": (50, 95, 99)}
SEND_LAG_CHART = (50, 99)  # and its max


def _empty() -> dict[str, list[np.ndarray]]:
    return {m.suffixed: [] for m in RAW_METRICS}


class LagCounts:
    """Send lags of an interval (or a window): log-bucket counts and the exact max."""

    def __init__(self) -> None:
        self.counts = np.zeros(loghist.BUCKETS, dtype=np.int64)
        self.max = -np.inf

    def add(self, lags: np.ndarray) -> None:
        self.counts += np.bincount(loghist.bucket_of(lags), minlength=loghist.BUCKETS)
        self.max = max(self.max, float(lags.max()))

    def merge(self, other: LagCounts) -> None:
        self.counts += other.counts
        self.max = max(self.max, other.max)

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def percentiles(self, qs: tuple[float, ...] | list[float]) -> list[float]:
        return [float(v) for v in loghist.quantiles(self.counts, [q / 100.0 for q in qs])]

    def summary(self) -> dict[str, float]:
        """The keys of metrics.summarize (count, min, mean, max, pQ), from the buckets (within 1 %)."""
        if not self.n:
            return {}
        out = {"count": float(self.n), "min": self.percentiles([0])[0], "mean": loghist.mean(self.counts) or 0.0,
               "max": self.max}
        out.update({f"p{q:g}": v for q, v in zip(PERCENTILES, self.percentiles(PERCENTILES))})
        return out


class LiveStats:
    """Fed by the recorder (`add`), closed every INTERVAL_S (`close_interval`), read by the web UI (`snapshot`,
    `chart`). `add` may come from another thread than the web UI's requests: one lock guards the state."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active_streams = 0  # set by the recorder: this process's streams, or what the workers last reported
        self.reset()

    def reset(self, used_slots: Callable[[], int | None] | None = None) -> None:
        """A new test: nothing carried over from the previous one. `used_slots` reads the servers' total."""
        with self._lock:
            self.started_at = time.time()
            self.used_slots = used_slots or (lambda: None)
            self.outcomes: Counter[str] = Counter()
            self._pending = _empty()
            self._pending_lags = LagCounts()
            self._pending_rejected = 0
            self._window: deque[tuple[float, dict[str, np.ndarray], LagCounts]] = deque()
            self.points: deque[dict] = deque(maxlen=POINTS_KEPT)
            self._table: dict | None = {}
            self._last_close = time.monotonic()

    def add(self, batch: list[Batch]) -> None:
        lags = []
        with self._lock:
            for record, words, send_lag in batch:
                outcome = record["outcome"]
                self.outcomes[outcome] += 1
                if outcome == "rejected":
                    self._pending_rejected += 1
                if outcome in NOT_SERVED:
                    continue
                for m in RAW_METRICS:
                    if m.source == Source.SESSION and record.get(m.field) is not None:
                        self._pending[m.suffixed].append(np.array([record[m.field]], dtype=np.float64))
                    elif m.source == Source.WORD and words:
                        self._pending[m.suffixed].append(word_values(words, m.field))
                if send_lag:  # send_lag.bin's one metric, SEND_LAG
                    lags.append(send_lags(send_lag))
            if lags:
                self._pending_lags.add(np.concatenate(lags))  # bucketed once per batch: per session costs 5x more

    def close_interval(self) -> dict:
        """Close the current interval: its chart point (exact percentiles of the values recorded in it), and the
        table over the last TABLE_WINDOW_S. Called every INTERVAL_S by the web UI's ticker."""
        used = self.used_slots()  # (outside the lock: it reads the poller)
        with self._lock:
            pending, self._pending = self._pending, _empty()
            lags, self._pending_lags = self._pending_lags, LagCounts()
            rejected, self._pending_rejected = self._pending_rejected, 0
            now_mono = time.monotonic()
            elapsed, self._last_close = max(1e-3, now_mono - self._last_close), now_mono
            values = {m: np.concatenate(chunks) for m, chunks in pending.items() if chunks}
            now = time.time()
            point: dict = {"t": round(now - self.started_at, 3), "active_streams": self.active_streams,
                           "used_slots": used, "rejections_per_s": round(rejected / elapsed, 3)}
            for metric, qs in CHART_QUANTILES.items():
                v = values.get(metric)
                if v is not None and v.size:
                    for q, x in zip(qs, np.percentile(v, qs)):
                        point[f"{metric}_p{q}"] = round(float(x), 2)
            if lags.n:
                for q, x in zip(SEND_LAG_CHART, lags.percentiles(SEND_LAG_CHART)):
                    point[f"{SEND_LAG.suffixed}_p{q}"] = round(x, 2)
                point[f"{SEND_LAG.suffixed}_max"] = round(lags.max, 2)
            self.points.append(point)
            self._window.append((now, values, lags))
            while self._window and self._window[0][0] < now - TABLE_WINDOW_S:
                self._window.popleft()
            self._table = None  # computed when the tab asks for it: nothing while no browser looks
            return point

    def _window_table(self) -> dict:
        """Exact percentiles of the values in the table's window (under the lock), computed once per interval."""
        if self._table is None:
            table = {}
            for m in RAW_METRICS:
                chunks = [vals[m.suffixed] for _, vals, _ in self._window if m.suffixed in vals]
                if chunks:
                    table[m.suffixed] = summarize(np.concatenate(chunks), PERCENTILES)
            window_lags = LagCounts()
            for _, _, lags in self._window:
                window_lags.merge(lags)
            if window_lags.n:
                table[SEND_LAG.suffixed] = window_lags.summary()
            self._table = table
        return self._table

    def snapshot(self) -> dict:
        with self._lock:
            metrics = dict(self._window_table())
            outcomes = dict(self.outcomes)
        sessions = sum(outcomes.values())
        send_p99 = metrics.get(SEND_LAG.suffixed, {}).get("p99")
        return {
            "window_s": TABLE_WINDOW_S,
            "metrics": metrics,
            "outcomes": outcomes,
            "sessions": sessions,
            "rejection_rate": outcomes.get("rejected", 0) / sessions if sessions else 0.0,
            "active_streams": self.active_streams,
            "generator_bound": send_p99 is not None and send_p99 > GENERATOR_LAG_LIMIT_MS,
        }

    def chart(self, since: float = -1.0) -> list[dict]:
        """The chart points after `since` (seconds since the test's start)."""
        with self._lock:
            return [p for p in self.points if p["t"] > since]
