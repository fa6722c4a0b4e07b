"""What the web UI's STT tab costs the process that records the sessions, at a given number of streams.

Feeds `LiveStats` (yapbench/locust/live.py) the records of S concurrent streams, as a master receives them: every
2-s interval, the sessions that ended in it (sessions of 8-12 s of speech, 2.5 words/s, 12.5 frames/s, 1 %
rejected), then closes the interval (one chart point) and reads the table (its 10-s window), as an open tab does.
Prints the CPU time of `add` and of the close per interval (median and max) and the peak RSS. Records are built
before timing.

    .venv/bin/python benchmarks/live_tab.py --streams 10000 --intervals 60
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import numpy as np

from yapbench.locust.live import INTERVAL_S, LiveStats
from yapbench.runlog import SEND_LAG_DTYPE, WORD_DTYPE


def interval_batch(streams: int, rng: np.random.Generator) -> list:
    """The records of the sessions that end in one interval: streams / mean session length * interval."""
    batch = []
    for _ in range(int(streams * INTERVAL_S / 10.0)):
        speech_s = rng.uniform(8, 12)
        rejected = rng.random() < 0.01
        record = {"outcome": "rejected" if rejected else "ok", "connect_ms": 2.0, "ready_ms": 5.0,
                  "first_response_ms": 90.0, "first_word_ms": float(rng.gamma(4, 100)), "finalize_ms": 300.0}
        if rejected:
            batch.append((record, b"", b""))
            continue
        words = np.zeros(int(speech_s * 2.5), dtype=WORD_DTYPE)
        words["lag_ms"] = rng.gamma(4, 60, words.size)
        lags = np.zeros(int(speech_s * 12.5), dtype=SEND_LAG_DTYPE)
        lags["lag_ms"] = rng.exponential(1.0, lags.size)
        batch.append((record, words.tobytes(), lags.tobytes()))
    return batch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--intervals", type=int, default=60)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    batches = [interval_batch(args.streams, rng) for _ in range(min(args.intervals, 8))]
    live = LiveStats()
    live.reset(lambda: args.streams)
    adds, closes = [], []
    for i in range(args.intervals):
        batch = batches[i % len(batches)]
        t0 = time.process_time()
        for j in range(0, len(batch), 100):  # as the workers' reports bring them, a few at a time
            live.add(batch[j:j + 100])
        t1 = time.process_time()
        live.active_streams = args.streams
        live.close_interval()
        live.snapshot()  # what the open STT tab asks for every 2 s: the table's window
        t2 = time.process_time()
        adds.append(t1 - t0)
        closes.append(t2 - t1)
    sessions = sum(len(b) for b in batches) / len(batches)
    print(f"{args.streams} streams: {sessions:.0f} sessions per {INTERVAL_S:g} s interval, {args.intervals} intervals")
    print(f"add:   median {statistics.median(adds) * 1000:.1f} ms, max {max(adds) * 1000:.1f} ms CPU per interval")
    print(f"close + table: median {statistics.median(closes) * 1000:.1f} ms, "
          f"max {max(closes) * 1000:.1f} ms CPU per interval")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
