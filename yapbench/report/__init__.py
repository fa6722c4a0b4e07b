"""Run directory -> summary.json (exact numbers the gates read), report.html and PNGs.

Importing this package is cheap: pandas, jiwer and matplotlib load only when a function below runs, because the
`yapbench` CLI imports it to build its parser and the gates import `yapbench.report.schema`. Its modules never
import this package back: what they share lives in `outputs` (the files written) and `section` (inputs from others).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .outputs import REPORT, SUMMARY, write_summary
from .section import Section

__all__ = ["REPORT", "SUMMARY", "Section", "build_report", "summarize_run", "write_summary"]


def summarize_run(run_dir: str | Path, since: float | None = None, until: float | None = None,
                  settle_s: float | None = None) -> dict:
    """The summary of a run (headline figures from its steady state: report.phases, `settle_s` after the last user
    started, default the run's own --settle), or of the sessions that started in [since, until) (epoch seconds,
    no phases); writes nothing."""
    from .load import load_run
    from .summary import summarize_data, summarize_phases

    if since is not None or until is not None:
        return summarize_data(load_run(run_dir, since, until))
    return summarize_phases(load_run(run_dir), settle_s)


def build_report(run_dir: str | Path, sections: Sequence[Section] = (), settle_s: float | None = None) -> dict:
    """Write summary.json, report.html and its PNGs into the run directory; return the summary. `sections` come
    first in the page (the capacity search's answer and curve); `settle_s` as for summarize_run."""
    from .build import build

    return build(Path(run_dir), sections, settle_s)
