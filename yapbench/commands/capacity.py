"""`yapbench capacity`: run the capacity search as a Locust load shape, then answer in one line.

Exit codes: 0 an answer was found, 1 even the first level broke an SLO, 2 unusable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from ..errors import UserError
from ..metricdefs import GENERATOR_LAG_LIMIT_MS
from ..options import On, add_cli_options

DEFAULT_SLOS = ("word_lag.p95<=1000ms",)


def configure(parser: argparse.ArgumentParser) -> None:
    add_cli_options(parser, On.CAPACITY)
    parser.add_argument("--slo", action="append", default=[], metavar="EXPR",
                        help='a condition every level must hold, e.g. "first_word.p95<=1000ms" (repeatable; '
                             f'default {DEFAULT_SLOS[0]!r})')
    parser.add_argument("--start", type=int, default=4, help="first concurrency (default 4)")
    parser.add_argument("--factor", type=float, default=2.0, help="growth factor while every SLO holds (default 2)")
    parser.add_argument("--max-users", type=int, default=1024, help="highest concurrency to try (default 1024)")
    parser.add_argument("--resolution", type=int, default=2, help="stop bisecting at this many streams (default 2)")
    parser.add_argument("--window", type=float, default=10.0, help="seconds per measurement window (default 10)")
    parser.add_argument("--settle", type=float, default=None, help="seconds ignored after a level change "
                                                                   "(default: one window)")
    parser.add_argument("--stable-windows", type=int, default=3, help="windows that must agree (default 3)")
    parser.add_argument("--tolerance", type=float, default=0.10, help="relative agreement of those windows (0.10)")
    parser.add_argument("--max-windows", type=int, default=6, help="give up waiting for stability after this many")
    parser.add_argument("--beside", metavar="RUN_DIR", default="",
                        help="another yapbench capacity run directory on the same server (e.g. back-to-back speech "
                             "beside --conversation): its answer is printed and reported with this one")
    parser.add_argument("--generator-limit", type=float, default=GENERATOR_LAG_LIMIT_MS, metavar="MS",
                        help=f"a level whose send-lag p99 is above this measured the generator, not the server, and "
                             f"ends the search (default {GENERATOR_LAG_LIMIT_MS:g} ms); raise it only on a small "
                             "shared host, knowing every latency then carries up to that much of the generator's delay")
    parser.add_argument("--allow-rejections", action="store_true",
                        help="do not stop at the first capacity rejection (judge by the SLOs only)")
    parser.add_argument("--pause", type=float, default=0.25,
                        help="seconds each user waits between sessions (default 0.25): the server frees a slot one "
                             "step after a close, and a user that reconnects at once would be rejected by itself")
    model = parser.add_argument_group("open model (--model open: sweep the arrival rate, docs/capacity.md)")
    model.add_argument("--model", choices=("closed", "open"), default="closed",
                       help="closed: concurrent streams (default); open: sessions arriving at a rate, answered in "
                            "sessions/s and Erlangs; --max-users is then the cap on concurrent sessions")
    model.add_argument("--start-rate", type=float, default=1.0, help="first arrival rate, sessions/s (default 1)")
    model.add_argument("--max-rate", type=float, default=1000.0, help="highest arrival rate to try (default 1000)")
    model.add_argument("--rate-resolution", type=float, default=0.1,
                       help="stop bisecting when the rates are this fraction apart (default 0.1)")


def main(args: argparse.Namespace) -> int:
    from ..capacity import CAPACITY_JSON, SPEC_JSON
    from ..capacity.search import SearchSpec
    from ..runlog import default_run_dir
    from ..slo import parse_condition
    from .run import run_load

    if args.model == "open":
        from .capacity_open import run_open

        return run_open(args)
    from ..capacity.answer import answer_lines, beside_answer

    slos = tuple(args.slo) or DEFAULT_SLOS
    for s in slos:
        parse_condition(s)  # a typo fails now, not after minutes of load
    try:
        beside = beside_answer(args.beside) if args.beside else None
        spec = SearchSpec(slos=slos, start=args.start, factor=args.factor, max_users=args.max_users,
                          resolution=args.resolution, window_s=args.window,
                          settle_s=args.window if args.settle is None else args.settle,
                          stable_windows=args.stable_windows, tolerance=args.tolerance, max_windows=args.max_windows,
                          stop_on_rejection=not args.allow_rejections, conversation=args.conversation or "",
                          beside=beside, generator_limit_ms=args.generator_limit)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    run_dir = Path(args.run_dir or default_run_dir())
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / SPEC_JSON).write_text(json.dumps(asdict(spec), indent=2) + "\n", encoding="utf-8")
    # Every user streams back to back (a short pause only): concurrency = users.
    args.users, args.spawn_rate, args.run_time, args.think_time = spec.max_users, 50.0, "24h", args.pause
    args.shape, args.capacity_spec = "capacity", str(run_dir / SPEC_JSON)

    code = run_load(args, str(run_dir))
    answer_path = run_dir / CAPACITY_JSON
    if not answer_path.exists():
        print(f"yapbench capacity: the load ended (exit {code}) before any level was measured", file=sys.stderr)
        return 2
    answer = json.loads(answer_path.read_text(encoding="utf-8"))
    from ..capacity.plot import CAPACITY_PNG

    print(f"capacity curve: {run_dir / CAPACITY_PNG} (and in {run_dir / 'report.html'})")
    print("\n".join(answer_lines(answer)))
    return 0 if answer["capacity"] is not None else 1
