"""The end of every load (Locust's quitting hook, `yapbench run`): report, then gates; one exit code.

Run, report and gates meet only at the run directory: this module just calls them in order.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from .errors import UserError

if TYPE_CHECKING:
    from .report import Section

DEFER_SUMMARY_ENV = "YAPBENCH_DEFER_SUMMARY"  # set by `yapbench run`, which prints it after Locust's own tables


def print_summary(summary: dict, run_dir: Path, report: bool = True) -> None:
    from .report import REPORT
    from .report.text import headline

    print(headline(summary))
    for note in summary.get("notes", []):
        print(f"note: {note}")
    print(f"run directory: {run_dir}")
    if report:
        print(f"report: {Path(run_dir) / REPORT}")


def finish_run(run_dir: Path, report: bool = True, gates: str | None = None, baseline: str | None = None,
               sections: Sequence["Section"] = ()) -> int:
    """Build the report (with `sections` first), apply the gates; return the run's exit code (0 pass, 1 fail,
    2 unusable)."""
    from .report import build_report, summarize_run, write_summary

    try:
        if report:
            summary = build_report(run_dir, sections)
        else:
            summary = summarize_run(run_dir)
            write_summary(run_dir, summary)
    except Exception as exc:  # a failed report must not hide the run: the raw records are still there
        print(f"yapbench: the report could not be built from {run_dir}: {exc!r}", file=sys.stderr)
        return 2
    if not os.environ.get(DEFER_SUMMARY_ENV):
        print_summary(summary, run_dir, report)
    if not gates:
        # Without gates a run passes when the server served anything at all; rejections alone are a finding,
        # not a failure (Locust's own rule, "any failed request exits 1", would fail every capacity test).
        if not summary.get("outcomes", {}).get("ok"):
            print("yapbench: no session completed ok: exit code 1", file=sys.stderr)
            return 1
        return 0
    from .gates import check_run, publish

    try:
        return publish(check_run(run_dir, gates, baseline=baseline), run_dir)
    except UserError as exc:
        print(f"yapbench gate: {exc}", file=sys.stderr)
        return exc.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m yapbench.finish RUN_DIR [...]`: what the Locust layer runs at the end of each test, in a child
    process, so that the web UI (and the next test) go on while pandas and matplotlib work."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m yapbench.finish")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument("--gates", default="")
    parser.add_argument("--baseline", default="")
    parser.add_argument("--capacity", action="store_true", help="add the capacity search's section")
    args = parser.parse_args(argv)
    sections = []
    if args.capacity and not args.no_report:
        from .capacity.section import report_section

        capacity = report_section(args.run_dir)
        sections = [capacity] if capacity else []
    return finish_run(args.run_dir, report=not args.no_report, gates=args.gates or None,
                      baseline=args.baseline or None, sections=sections)


if __name__ == "__main__":
    sys.exit(main())
