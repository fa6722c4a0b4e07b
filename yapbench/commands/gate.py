"""`yapbench gate RUN_DIR --gates gates.toml [--condition EXPR] [--baseline OTHER] [--junit FILE]`: the gates'
verdict on a run (docs/gates.md): a table, JUnit XML and an exit code (0 pass, 1 fail, 2 unusable input)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..gates import JUNIT, check_run, publish


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the run directory (or its summary.json)")
    parser.add_argument("--gates", type=Path, metavar="FILE", help="gates file (TOML, docs/gates.md)")
    parser.add_argument("--condition", action="append", default=[], metavar="EXPR",
                        help='an extra threshold, e.g. "first_word.p95<=1200ms" (repeatable)')
    parser.add_argument("--baseline", type=Path, metavar="RUN_DIR",
                        help="baseline run directory (or summary.json) for [[regression]] entries")
    parser.add_argument("--junit", type=Path, metavar="FILE", help=f"JUnit XML output (default RUN_DIR/{JUNIT})")


def main(args: argparse.Namespace) -> int:
    verdict = check_run(args.run_dir, args.gates, args.condition, args.baseline)
    return publish(verdict, args.run_dir, args.junit)
