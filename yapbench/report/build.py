"""The whole report: read once, summarise, plot, render, write."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on CI hosts; must precede any other matplotlib import

from . import REPORT, plots, write_summary  # noqa: E402
from .html import render  # noqa: E402
from .load import RunData, load_run  # noqa: E402
from .summary import summarize_data  # noqa: E402
from .timeseries import build as build_timeseries  # noqa: E402


def build(run_dir: Path) -> dict:
    run = load_run(run_dir)
    summary = summarize_data(run)
    write_summary(run_dir, summary)
    ts = build_timeseries(run)
    images = {
        "latency_cdf": plots.latency_cdfs(plots.latency_values(run), run_dir),
        "timeseries": plots.timeseries(ts, run_dir),
        "gpu": plots.gpu(ts, run_dir),
        "load_latency": plots.load_vs_latency(run, run_dir),
        "outcomes": plots.outcomes(summary["outcomes"], run_dir),
        "wer": plots.wer_by_sample(summary["wer_by_sample"], run_dir),
    }
    capacity = _capacity(run_dir)
    if capacity is not None:
        from ..capacity.plot import plot_capacity

        images["capacity"] = plot_capacity(capacity, run_dir).name
    (run_dir / REPORT).write_text(render(summary, images, summary["notes"] + _missing(run), capacity),
                                  encoding="utf-8")
    return summary


def _capacity(run_dir: Path) -> dict | None:
    """capacity.json, when the run was a `yapbench capacity` search."""
    from ..capacity import CAPACITY_JSON

    path = run_dir / CAPACITY_JSON
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    except (OSError, json.JSONDecodeError):
        return None


def _missing(run: RunData) -> list[str]:
    """Report-only notes on what the run directory lacks (the summary already carries the data notes)."""
    notes = []
    if run.gpu is None:
        notes.append("no GPU telemetry: gpu.csv is absent or empty (the generator saw no GPU through NVML, "
                     "or the server runs on another host)")
    if run.sessions.empty:
        notes.append("no sessions: sessions.jsonl holds no complete line")
    return notes
