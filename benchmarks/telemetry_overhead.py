"""What the master's telemetry costs per second of a 1,000-stream load: the Prometheus exporter fed every finished
session (yapbench.promexport.LoadMetrics.add, plus one scrape), and the /metrics scraper's parse of one target.

    .venv/bin/python benchmarks/telemetry_overhead.py [--streams 1000] [--repeat 7]

A stream of the default samples lasts ~10 s, so 1,000 streams finish ~100 sessions a second, each with ~25 words
and ~125 frames of send lag. The numbers are CPU seconds the master spends per wall second (median of --repeat);
results go in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import CollectorRegistry

from yapbench.promexport import LoadMetrics
from yapbench.runlog import SEND_LAG_DTYPE, WORD_DTYPE
from yapbench.server.prom import AsrMetrics
from yapbench.servermetrics import interval_row, parse_scrape

SESSION_S = 10.0
WORDS = 25
FRAMES = 125


def batch(rng: np.random.Generator, sessions: int, targets: int) -> list:
    out = []
    for i in range(sessions):
        record = {"outcome": "ok", "target": f"ws://gpu-{i % targets}:8080", "first_word_ms": float(rng.gamma(9, 40)),
                  "finalize_ms": float(rng.gamma(4, 20))}
        words = np.zeros(WORDS, dtype=WORD_DTYPE)
        words["lag_ms"] = rng.gamma(9, 30, WORDS)
        lag = np.zeros(FRAMES, dtype=SEND_LAG_DTYPE)
        lag["lag_ms"] = rng.exponential(1.0, FRAMES)
        out.append((record, words.tobytes(), lag.tobytes()))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--targets", type=int, default=2)
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    per_second = int(args.streams / SESSION_S)
    exporter, scraper = [], []
    for _ in range(args.repeat):
        metrics = LoadMetrics(lambda: args.streams, lambda: args.streams)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(metrics)
        data = batch(rng, per_second, args.targets)
        t = time.process_time()
        for _ in range(10):  # ten seconds of finished sessions, stored in report-sized batches of ~1/3 s
            for k in range(0, per_second, max(1, per_second // 3)):
                metrics.add(data[k:k + max(1, per_second // 3)])
            generate_latest(registry)  # one Prometheus scrape per second
        exporter.append((time.process_time() - t) / 10)
        server = AsrMetrics()
        for v in rng.gamma(9, 0.004, 5000):
            server.step_duration.observe(float(v))
        old = parse_scrape(server.render())
        t = time.process_time()
        for _ in range(100):
            interval_row(parse_scrape(server.render()), old)
        scraper.append((time.process_time() - t) / 100)
    print(json.dumps({
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()} {platform.release()}",
        "streams": args.streams, "sessions_per_s": per_second,
        "exporter_cpu_ms_per_s": round(1000 * statistics.median(exporter), 3),
        "scrape_cpu_ms_per_target_per_s": round(1000 * statistics.median(scraper), 3),
    }, indent=2))


if __name__ == "__main__":
    main()
