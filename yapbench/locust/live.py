"""Exact live statistics for the web UI's STT tab, from the same records the run directory gets."""

from __future__ import annotations

import threading
from collections import Counter

import numpy as np

from ..metricdefs import METRICS, SEND_LAG, Metric, Source
from ..metrics import NOT_SERVED, PERCENTILES, summarize
from ..runlog import Batch, send_lags, word_values

LIVE_METRICS: tuple[Metric, ...] = tuple(m for m in METRICS if m.live)
TABLE_METRICS = tuple(m.suffixed for m in LIVE_METRICS)  # the tab's row names and the snapshot's keys
SEND_LAG_WARN_MS = 10.0


class LiveStats:
    """Raw values per metric plus outcome counts; `snapshot()` computes exact percentiles on demand."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self._values: dict[str, list[np.ndarray]] = {m: [] for m in TABLE_METRICS}
        self.outcomes: Counter[str] = Counter()
        self.active_streams = 0

    def add(self, batch: list[Batch]) -> None:
        with self._lock:
            for record, words, send_lag in batch:
                self.outcomes[record["outcome"]] += 1
                if record["outcome"] in NOT_SERVED:
                    continue
                for m in LIVE_METRICS:
                    if m.source == Source.SESSION and record.get(m.field) is not None:
                        self._values[m.suffixed].append(np.array([record[m.field]]))
                    elif m.source == Source.WORD and words:
                        self._values[m.suffixed].append(word_values(words, m.field))
                    elif m.source == Source.FRAME and send_lag:  # send_lag.bin's one metric
                        self._values[m.suffixed].append(send_lags(send_lag))

    def snapshot(self) -> dict:
        with self._lock:
            metrics = {}
            for m, chunks in self._values.items():
                if chunks:
                    merged = np.concatenate(chunks)
                    self._values[m] = [merged]  # keep one array: later snapshots concatenate less
                    metrics[m] = summarize(merged, PERCENTILES)
            outcomes = dict(self.outcomes)
        sessions = sum(outcomes.values())
        send_p99 = metrics.get(SEND_LAG.suffixed, {}).get("p99")
        return {
            "metrics": metrics,
            "outcomes": outcomes,
            "sessions": sessions,
            "rejection_rate": outcomes.get("rejected", 0) / sessions if sessions else 0.0,
            "active_streams": self.active_streams,
            "generator_bound": send_p99 is not None and send_p99 > SEND_LAG_WARN_MS,
        }
