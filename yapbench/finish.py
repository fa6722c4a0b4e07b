"""The end of every load (Locust's quitting hook, `yapbench run`): report, then gates; one exit code.

Run, report and gates meet only at the run directory: this module just calls them in order.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .errors import UserError


def finish_run(run_dir: Path, report: bool = True, gates: str | None = None, baseline: str | None = None) -> int | None:
    """Build the report (and apply gates); return the exit code the gates decide, None when there are none."""
    from .report import REPORT, build_report, summarize_run, write_summary
    from .report.text import headline

    try:
        if report:
            summary = build_report(run_dir)
        else:
            summary = summarize_run(run_dir)
            write_summary(run_dir, summary)
    except Exception as exc:  # a failed report must not hide the run: the raw records are still there
        print(f"yapbench: the report could not be built from {run_dir}: {exc!r}", file=sys.stderr)
        return 2
    print(headline(summary))
    for note in summary.get("notes", []):
        print(f"note: {note}")
    print(f"run directory: {run_dir}")
    if report:
        print(f"report: {Path(run_dir) / REPORT}")
    if not gates:
        return None
    from .gates import apply_gates

    try:
        return apply_gates(Path(run_dir), Path(gates), Path(baseline) if baseline else None)
    except UserError as exc:
        print(f"yapbench gate: {exc}", file=sys.stderr)
        return exc.exit_code
