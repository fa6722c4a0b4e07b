"""Live load metrics in Prometheus's text format (`--prometheus-port`): what the run directory records, as counters,
gauges and histograms a Prometheus server can scrape while the load runs (docs/telemetry.md lists them).

The master (or the only process) feeds every batch of finished sessions it stores; one session's hundreds of word
lags and send lags go into the histograms as numpy arrays (one searchsorted per batch), not one Python call per
value, so a thousand-stream load costs the master next to nothing. Exact percentiles stay the report's job: these
are bucketed, for dashboards and alerts.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable
from wsgiref.simple_server import WSGIServer

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from .metricdefs import BY_NAME, GENERATOR_LAG_LIMIT_MS
from .metrics import NOT_SERVED
from .runlog import Batch, send_lags, word_values

PREFIX = "yapbench"
LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)  # seconds
SEND_LAG_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
SEND_LAG_LIMIT_S = GENERATOR_LAG_LIMIT_MS / 1000.0  # a p99 above it: the generator, not the server, sets the pace
OVERLOAD_WINDOW_S = 30.0

class BulkHistogram:
    """Cumulative bucket counts per label value, fed whole arrays at a time."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = np.asarray(bounds, dtype=np.float64)
        self.counts: dict[str, np.ndarray] = {}  # label value -> count per bucket (last: above every bound)
        self.sums: dict[str, float] = {}

    def observe(self, label: str, values: np.ndarray) -> None:
        values = values[~np.isnan(values)]
        if not values.size:
            return
        # Prometheus buckets are `le` (upper bound inclusive): side="left" puts a value equal to a bound in it.
        idx = np.searchsorted(self.bounds, values, side="left")
        counts = self.counts.setdefault(label, np.zeros(self.bounds.size + 1, dtype=np.int64))
        counts += np.bincount(idx, minlength=counts.size)
        self.sums[label] = self.sums.get(label, 0.0) + float(values.sum())

    def family(self, name: str, doc: str, label: str | None) -> HistogramMetricFamily:
        fam = HistogramMetricFamily(name, doc, labels=[label] if label else None)
        for value, counts in self.counts.items():
            cumulative = np.cumsum(counts)
            buckets = [(floatToGoString(b), float(c)) for b, c in zip(self.bounds, cumulative[:-1])]
            buckets.append(("+Inf", float(cumulative[-1])))
            fam.add_metric([value] if label else [], buckets, self.sums[value])
        return fam


class LoadMetrics(Collector):
    """Everything `--prometheus-port` exports. `add(batch)` from the process that stores records; `collect()` from
    the exporter's HTTP handler (another greenlet or thread: both take the lock)."""

    def __init__(self, active_streams: Callable[[], int], users: Callable[[], int],
                 clock: Callable[[], float] = time.time) -> None:
        self._active_streams = active_streams
        self._users = users
        self._clock = clock
        self._lock = threading.Lock()
        self.sessions: dict[tuple[str, str], int] = {}  # (outcome, target) -> count
        self.first_word = BulkHistogram(LATENCY_BUCKETS)
        self.word_lag = BulkHistogram(LATENCY_BUCKETS)
        self.finalize = BulkHistogram(LATENCY_BUCKETS)
        self.send_lag = BulkHistogram(SEND_LAG_BUCKETS)
        self._recent_lags: deque[tuple[float, np.ndarray]] = deque()  # (arrival, lags in s) for the overload gauge

    def add(self, batch: list[Batch]) -> None:
        now = self._clock()
        with self._lock:
            for record, words, send_lag in batch:
                target = str(record.get("target") or "")
                key = (str(record["outcome"]), target)
                self.sessions[key] = self.sessions.get(key, 0) + 1
                if key[0] in NOT_SERVED:  # Outcome is a StrEnum: the record's string matches
                    continue
                for hist, metric in ((self.first_word, BY_NAME["first_word"]), (self.finalize, BY_NAME["finalize"])):
                    if record.get(metric.field) is not None:
                        hist.observe(target, np.array([record[metric.field] / 1000.0]))
                if words:
                    word_lag = word_values(words, BY_NAME["word_lag"].field)
                    self.word_lag.observe(target, word_lag.astype(np.float64) / 1000.0)
                if send_lag:
                    lags = send_lags(send_lag).astype(np.float64) / 1000.0
                    self.send_lag.observe("", lags)
                    self._recent_lags.append((now, lags))
            while self._recent_lags and self._recent_lags[0][0] < now - OVERLOAD_WINDOW_S:
                self._recent_lags.popleft()

    def send_lag_p99(self) -> float | None:
        """p99 of the send lags that arrived in the last OVERLOAD_WINDOW_S seconds (exact: raw values)."""
        horizon = self._clock() - OVERLOAD_WINDOW_S
        with self._lock:
            recent = [lags for t, lags in self._recent_lags if t >= horizon]
        return float(np.percentile(np.concatenate(recent), 99)) if recent else None

    def collect(self):  # noqa: ANN201 (prometheus_client's Collector protocol)
        p99 = self.send_lag_p99()
        with self._lock:
            sessions = CounterMetricFamily(f"{PREFIX}_sessions", "Finished sessions, by outcome and target.",
                                           labels=["outcome", "target"])
            rejections = CounterMetricFamily(f"{PREFIX}_rejections",
                                             "Sessions the server rejected (no free channels), by target.",
                                             labels=["target"])
            for (outcome, target), n in sorted(self.sessions.items()):
                sessions.add_metric([outcome, target], n)
                if outcome == "rejected":
                    rejections.add_metric([target], n)
            families = [
                sessions,
                rejections,
                self.first_word.family(f"{PREFIX}_first_word_seconds",
                                       "First Word after the first audio frame, per served session.", "target"),
                self.word_lag.family(f"{PREFIX}_word_lag_seconds",
                                     "Word arrival minus the audio time it ends at, per word.", "target"),
                self.finalize.family(f"{PREFIX}_finalize_seconds", "Final Marker sent to its echo, per session.",
                                     "target"),
                self.send_lag.family(f"{PREFIX}_send_lag_seconds",
                                     "Generator send lag (actual minus scheduled send time), per audio frame.", None),
            ]
        families.append(GaugeMetricFamily(f"{PREFIX}_active_streams", "Streams open now, over all load processes.",
                                          value=self._active_streams()))
        families.append(GaugeMetricFamily(f"{PREFIX}_users", "Locust users running now.", value=self._users()))
        families.append(GaugeMetricFamily(
            f"{PREFIX}_generator_send_lag_p99_seconds",
            f"p99 of the generator's send lag over the last {OVERLOAD_WINDOW_S:g} s (NaN before any frame).",
            value=float("nan") if p99 is None else p99))
        families.append(GaugeMetricFamily(
            f"{PREFIX}_generator_overloaded",
            f"1 when that p99 is over {1000 * SEND_LAG_LIMIT_S:g} ms: the generator, not the server, sets the pace.",
            value=float(p99 is not None and p99 > SEND_LAG_LIMIT_S)))
        yield from families


def serve(metrics: LoadMetrics, port: int, addr: str = "") -> tuple[WSGIServer, threading.Thread]:
    """An HTTP server for /metrics on `port` (all interfaces unless `addr`); returns (server, thread) to shut it
    down. OSError when the port is taken."""
    from prometheus_client import start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    return start_http_server(port, addr=addr or "0.0.0.0", registry=registry)
