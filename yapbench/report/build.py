"""The whole report: read once, summarise, plot, render, write."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # no display on CI hosts; must precede any other matplotlib import

from . import plots  # noqa: E402
from .html import render  # noqa: E402
from .load import RunData, load_run  # noqa: E402
from .outputs import REPORT, write_summary  # noqa: E402
from .section import Section  # noqa: E402
from .summary import summarize_phases  # noqa: E402
from .timeseries import build as build_timeseries  # noqa: E402


def build(run_dir: Path, sections: Sequence[Section] = (), settle_s: float | None = None) -> dict:
    run = load_run(run_dir)
    summary = summarize_phases(run, settle_s)
    write_summary(run_dir, summary)
    ts = build_timeseries(run)
    images = {
        "latency_cdf": plots.latency_cdfs(plots.latency_values(run), run_dir),
        "timeseries": plots.timeseries(ts, run_dir, summary["phases"]),
        "gpu": plots.gpu(ts, run_dir),
        "server": plots.server(ts, run_dir),
        "load_latency": plots.load_vs_latency(run, run_dir),
        "outcomes": plots.outcomes(summary["outcomes"], run_dir),
        "wer": plots.wer_by_sample(summary["wer_by_sample"], run_dir),
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
