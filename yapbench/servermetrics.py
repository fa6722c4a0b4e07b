"""Server telemetry: each target's Prometheus /metrics scraped once a second into RUN_DIR/server_metrics.csv.

moshi-server (and yap-server, whose metrics code is identical) exposes four ASR metrics (docs/telemetry.md):
`asr_model_step_duration` (histogram, seconds), `asr_open_channels` (gauge), `asr_connect` (counter) and
`asr_connection_num_steps` (histogram, observed when a connection's slot is dropped). A model step longer than the
80 ms frame is the capacity knee itself: the batch then falls behind real time.

Each scrape holds cumulative values; a row describes the interval since the previous scrape of that target (the
histogram's bucket deltas give that interval's step-time percentiles, interpolated inside a bucket the way
Prometheus's histogram_quantile does, so their resolution is the server's buckets). The first scrape of a target
only sets the origin. A counter that goes down (the server restarted) starts a new origin.

Scraping is the slot poller's loop (yapbench.serverpoll.TargetPoller); how a target is fetched is a `Fetch`:
plain HTTP to the target's host, or GET through an SSH channel for --provision's hosts (yapbench.locust.provisioned).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .runlog import SERVER_METRICS as SERVER_METRICS_CSV, SERVER_METRICS_COLUMNS as COLUMNS  # runlog's format
from .serverpoll import TargetPoller, http_url

METRICS_PATH = "/metrics"
STEP = "asr_model_step_duration"
OPEN_CHANNELS = "asr_open_channels"
CONNECT = "asr_connect"
CONNECTION_STEPS = "asr_connection_num_steps"
FRAME_S = 0.08  # one 1920-sample frame at 24 kHz: a step slower than this falls behind real time

# t: epoch seconds of the scrape; the rest, per interval since the previous scrape:
#   connects: new connections; steps: model steps; step_*_ms: their duration; slow_steps: steps over FRAME_S
#   (empty when the server's buckets have no 0.08 bound); closed: connections ended; closed_mean_steps: their
#   mean length in steps. open_channels is the gauge at the scrape.

Fetch = Callable[[], str]  # the /metrics text; raises ScrapeError (or OSError) when there is none


class ScrapeError(Exception):
    """Why a target gave no metrics: one line for the log and the report."""


@dataclass(frozen=True)
class Histogram:
    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), ascending, +Inf last
    count: float
    sum: float

    def minus(self, older: Histogram) -> Histogram:
        old = dict(older.buckets)
        return Histogram(tuple((le, c - old.get(le, 0.0)) for le, c in self.buckets), self.count - older.count,
                         self.sum - older.sum)

    def quantile(self, q: float) -> float | None:
        """Prometheus's histogram_quantile: linear inside the bucket that holds rank q*count; in the +Inf bucket,
        the highest finite bound (the histogram cannot say more)."""
        if self.count <= 0 or not self.buckets:
            return None
        rank = q * self.count
        lower, below = 0.0, 0.0
        for le, cumulative in self.buckets:
            if cumulative >= rank:
                if le == float("inf"):
                    return lower
                inside = cumulative - below
                return lower + (le - lower) * ((rank - below) / inside if inside > 0 else 1.0)
            lower, below = le, cumulative
        return lower

    def above(self, bound: float) -> float | None:
        """Observations above `bound`, when `bound` is one of the bucket bounds."""
        for le, cumulative in self.buckets:
            if le == bound:
                return self.count - cumulative
        return None


@dataclass(frozen=True)
class Scrape:
    """The numbers of one /metrics answer (summed over label sets such as handler="all"); None: not exposed (the
    real server registers its metrics lazily, on the first connection or step)."""

    step: Histogram | None
    open_channels: float | None
    connects: float | None
    connection_steps: Histogram | None


def parse_scrape(text: str) -> Scrape:
    from prometheus_client.parser import text_string_to_metric_families

    sums: dict[tuple[str, str], float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                key = (s.name, s.labels.get("le", ""))
                sums[key] = sums.get(key, 0.0) + float(s.value)
    except ValueError as exc:
        raise ScrapeError(f"not Prometheus text format ({exc})") from None
    if not sums:
        raise ScrapeError("no metrics in the answer")

    def histogram(name: str) -> Histogram | None:
        if (f"{name}_count", "") not in sums:
            return None
        buckets = sorted((float(le), v) for (n, le), v in sums.items() if n == f"{name}_bucket")
        return Histogram(tuple(buckets), sums[(f"{name}_count", "")], sums.get((f"{name}_sum", ""), 0.0))

    # The parser names a counter's sample `<name>_total` whether or not the exposition did.
    connects = sums.get((f"{CONNECT}_total", ""), sums.get((CONNECT, "")))
    return Scrape(histogram(STEP), sums.get((OPEN_CHANNELS, "")), connects, histogram(CONNECTION_STEPS))


def interval_row(new: Scrape, old: Scrape | None) -> tuple:
    """The columns after t and target: the gauge now, and what happened between `old` and `new`."""
    step = _delta_hist(new.step, old.step if old else None)
    closed = _delta_hist(new.connection_steps, old.connection_steps if old else None)
    connects = None
    if old is not None and new.connects is not None and old.connects is not None:
        connects = new.connects - old.connects if new.connects >= old.connects else new.connects

    def ms(seconds: float | None) -> float | None:
        return None if seconds is None else round(1000.0 * seconds, 3)

    return (
        _count(new.open_channels),
        _count(connects),
        None if step is None else _count(step.count),
        ms(step.sum / step.count) if step is not None and step.count > 0 else None,
        ms(step.quantile(0.5)) if step is not None else None,
        ms(step.quantile(0.99)) if step is not None else None,
        _count(step.above(FRAME_S)) if step is not None else None,
        None if closed is None else _count(closed.count),
        round(closed.sum / closed.count, 2) if closed is not None and closed.count > 0 else None,
    )


def _count(x: float | None) -> int | float | None:
    """Counts and gauges print as integers when they are (the CSV stays readable)."""
    return int(x) if x is not None and float(x).is_integer() else x


def _delta_hist(new: Histogram | None, old: Histogram | None) -> Histogram | None:
    if new is None or old is None:
        return None
    return new if new.count < old.count else new.minus(old)  # a reset: the server restarted, count from zero


def http_fetch(ws_url: str, timeout_s: float = 2.0) -> Fetch:
    """GET /metrics on the target's own host and port."""
    url = http_url(ws_url, METRICS_PATH)

    def fetch() -> str:
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                return resp.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as exc:
            raise ScrapeError(f"GET {url}: HTTP {exc.code}") from None
        except OSError as exc:
            raise ScrapeError(f"GET {url}: {getattr(exc, 'reason', None) or exc}") from None

    return fetch


class MetricsScraper(TargetPoller):
    """Scrapes every target's /metrics each `interval_s` into server_metrics.csv (one row per target per scrape
    after its first)."""

    filename = SERVER_METRICS_CSV
    columns = COLUMNS

    def __init__(self, targets: list[str], run_dir: Path, interval_s: float = 1.0,
                 fetchers: dict[str, Fetch] | None = None) -> None:
        super().__init__(targets, run_dir, interval_s)
        self.fetchers = {t: (fetchers or {}).get(t) or http_fetch(t) for t in targets}
        self._last: dict[str, Scrape] = {}

    def read(self, target: str) -> tuple | None:
        try:
            scrape = parse_scrape(self.fetchers[target]())
        except (ScrapeError, OSError) as exc:
            self.failures[target] = str(exc)
            return None
        old = self._last.get(target)
        self._last[target] = scrape
        if old is None:
            self.failures[target] = "answered once (a row needs two scrapes)"
            return None
        return interval_row(scrape, old)
