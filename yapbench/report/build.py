"""The whole report: read once, summarise, plot, render, write."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # no display on CI hosts; must precede any other matplotlib import

from .html import render  # noqa: E402
from .load import RunData, load_run  # noqa: E402
from .outputs import REPORT, write_summary  # noqa: E402
from .plots import gpu as gpu_plot  # noqa: E402
from .plots import latency_cdfs, latency_values, load_vs_latency, wer_by_sample  # noqa: E402
from .plots import outcomes as outcomes_plot  # noqa: E402
from .plots import server as server_plot  # noqa: E402
from .plots import timeseries as timeseries_plot  # noqa: E402
from .section import Section  # noqa: E402
from .summary import summarize_phases  # noqa: E402
from .timeseries import build as build_timeseries  # noqa: E402
from .turnplots import timeline, turn_cdfs  # noqa: E402


def build(run_dir: Path, sections: Sequence[Section] = (), settle_s: float | None = None) -> dict:
    run = load_run(run_dir)
    summary = summarize_phases(run, settle_s)
    write_summary(run_dir, summary)
    ts = build_timeseries(run)
    images = {
        "latency_cdf": latency_cdfs(latency_values(run), run_dir),
        "timeseries": timeseries_plot(ts, run_dir, summary["phases"]),
        "gpu": gpu_plot(ts, run_dir),
        "server": server_plot(ts, run_dir),
        "load_latency": load_vs_latency(run, run_dir),
        "outcomes": outcomes_plot(summary["outcomes"], run_dir),
        "wer": wer_by_sample(summary["wer_by_sample"], run_dir),
        "turn_cdf": turn_cdfs(run, run_dir),  # conversations only
        "conversation": timeline(run, run_dir),
    }
    (run_dir / REPORT).write_text(render(summary, images, summary["notes"] + _missing(run), sections),
                                  encoding="utf-8")
    return summary


def _missing(run: RunData) -> list[str]:
    """Report-only notes on what the run directory lacks (the summary already carries the data notes)."""
    notes = []
    if run.gpu is None:
        notes.append("no GPU telemetry: gpu.csv is absent or empty (the generator saw no GPU through NVML, "
                     "or the server runs on another host)")
    if run.server_metrics is None:
        notes.append("no server metrics: server_metrics.csv is absent or empty (no target answered GET /metrics "
                     "twice; the log names each target and why)")
    if run.sessions.empty:
        notes.append("no sessions: sessions.jsonl holds no complete line")
    return notes
