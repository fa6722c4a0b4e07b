"""`yapbench report RUN_DIR`: summary.json, report.html and PNGs from a run directory."""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run directory (reports/<run-id>/)")
    parser.add_argument("--summary-only", action="store_true",
                        help="write summary.json only (no plots, no HTML): the fast path")
    parser.add_argument("--settle", type=float, default=None, metavar="SECONDS",
                        help="seconds after the last user started before the steady state, whose figures are the "
                             "headline (default: the run's own --settle, else 10)")


def main(args: argparse.Namespace) -> int:
    from ..capacity.section import report_section
    from ..report import REPORT, build_report, summarize_run, write_summary
    from ..report.text import headline

    if args.summary_only:
        summary = summarize_run(args.run_dir, settle_s=args.settle)
        path = write_summary(args.run_dir, summary)
    else:
        capacity = report_section(args.run_dir)  # a `yapbench capacity` run: its answer and curve first
        summary = build_report(args.run_dir, [capacity] if capacity else [], settle_s=args.settle)
        path = args.run_dir / REPORT
    print(headline(summary))
    for note in summary["notes"]:
        print(f"note: {note}")
    print(f"report: {path}")
    return 0
