"""`yapbench compare RUN_A RUN_B [RUN_C ...] --out DIR`: the runs side by side, with the noise in each difference."""

from __future__ import annotations

import argparse
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                        help="run directories; the first is the reference the others are compared with")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="where compare.html and its PNGs go")
    parser.add_argument("--confidence", type=float, default=0.95,
                        help="confidence level of the intervals (default 0.95)")


def main(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..compare import compare

    if len(args.runs) < 2:
        raise UserError("compare needs at least two run directories")
    if not 0.5 <= args.confidence < 1.0:
        raise UserError(f"--confidence {args.confidence}: give a level from 0.5 to below 1 (e.g. 0.95)")
    print(f"compare: {compare(args.runs, args.out, args.confidence)}")
    return 0
