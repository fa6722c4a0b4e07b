"""Run directory -> summary.json (exact numbers the gates read), report.html and PNGs.

Importing this package is cheap: pandas, jiwer and matplotlib load only when a function below runs, because the
`yapbench` CLI imports `yapbench.report.cli` to build its parser and the gates import `yapbench.report.schema`.
"""

from __future__ import annotations

from pathlib import Path

SUMMARY = "summary.json"
REPORT = "report.html"


def summarize_run(run_dir: str | Path, since: float | None = None, until: float | None = None) -> dict:
    """The summary of a run, or of the sessions that started in [since, until) (epoch seconds); writes nothing."""
    from .load import load_run
    from .summary import summarize_data

    return summarize_data(load_run(run_dir, since, until))


def build_report(run_dir: str | Path) -> dict:
    """Write summary.json, report.html and its PNGs into the run directory; return the summary."""
    from .build import build

    return build(Path(run_dir))


def write_summary(run_dir: str | Path, summary: dict) -> Path:
    """summary.json, replaced atomically (a gate reading it never sees half a file)."""
    import json
    import os

    path = Path(run_dir) / SUMMARY
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
