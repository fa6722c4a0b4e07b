"""`yapbench capacity --model open`: one open-loop Locust run per arrival rate, judged, then the answer.

Each rate is its own headless run (`yapbench run`'s code path) appending to the one run directory: the schedule
restarts from an empty server, the first --settle seconds of arrivals are ignored (the slots fill within about one
holding time), and the arrivals due in the next --window x --stable-windows seconds are summarised (this process
is not pacing frames, so pandas is fine here). In-flight sessions finish at the end of each run (Locust's
--stop-timeout, which yapbench defaults to a graceful 30 s), so every measured arrival is decided.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ..errors import UserError



def run_open(args: argparse.Namespace) -> int:
    from ..capacity import CAPACITY_JSON
    from ..capacity.opensearch import OPEN_GOODPUT_SLO, OPEN_SLOS, OpenSpec, RateSearch, evaluate_rate, open_answer_line
    from ..capacity.plot import CAPACITY_PNG
    from ..capacity.section import report_section
    from ..finish import DEFER_SUMMARY_ENV
    from ..goodput import parse_objectives
    from ..report import build_report, summarize_run
    from ..runlog import RunLog, default_run_dir, read_meta
    from ..slo import parse_condition
    from .run import run_load

    parse_objectives(args.goodput)  # a typo fails now, not after minutes of load
    slos = tuple(args.slo) or OPEN_SLOS + ((OPEN_GOODPUT_SLO,) if args.goodput else ())
    conditions = [parse_condition(s) for s in slos]
    settle = args.window if args.settle is None else args.settle
    try:
        spec = OpenSpec(slos=slos, start_rate=args.start_rate, factor=args.factor, max_rate=args.max_rate,
                        resolution=args.rate_resolution, settle_s=settle, measure_s=args.window * args.stable_windows,
                        generator_limit_ms=args.generator_limit)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    run_dir = Path(args.run_dir or default_run_dir())
    run_dir.mkdir(parents=True, exist_ok=True)
    # Every slot of the cap from the start: arrivals that found no slot yet would be dropped.
    args.users, args.spawn_rate = args.max_users, float(args.max_users)
    args.run_time = f"{spec.settle_s + spec.measure_s:g}s"
    args.shape, args.gates, args.baseline, args.think_time, args.no_report = "none", "", "", 0.0, True

    os.environ[DEFER_SUMMARY_ENV] = "1"  # each level's own summary would bury the levels' lines
    search = RateSearch(spec)
    rate: float | None = spec.start_rate
    while rate is not None:
        print(f"yapbench capacity: {rate:g} sessions/s ({args.arrival}), at most {args.users} concurrent",
              file=sys.stderr)
        args.arrival_rate = rate
        code = run_load(args, str(run_dir))
        if code == 2:
            return 2
        start = float(read_meta(run_dir).get("arrival_start") or 0.0) + spec.settle_s
        summary = summarize_run(run_dir, since=start, until=start + spec.measure_s)
        level = evaluate_rate(rate, summary, conditions, spec.generator_limit_ms)
        t = level.traffic
        print(f"yapbench capacity: {rate:g} sessions/s: offered {_g(t['offered_erlangs'])} Erlangs, blocking "
              f"{_pct(t['blocking'])} (Erlang B {_pct(t['erlang_b'])}), goodput {_pct(t['goodput'])}, dropped "
              f"{level.dropped}: " + ("holds" if level.passed else "FAIL (" + ", ".join(
                  level.broken + (["generator"] if level.generator_bound else [])) + ")"), file=sys.stderr)
        rate = search.record(level)

    answer = search.answer()
    (run_dir / CAPACITY_JSON).write_text(json.dumps(answer, indent=2) + "\n", encoding="utf-8")
    # The directory mixes every rate: its overall summary is not one open-loop run's, the levels are.
    log_ = RunLog(run_dir)
    log_.write_meta({"arrival_rate": None, "arrival_start": None, "capacity_model": "open"})
    log_.close()
    section = report_section(run_dir)
    build_report(run_dir, [section] if section else [])
    print(f"capacity curve: {run_dir / CAPACITY_PNG} (and in {run_dir / 'report.html'})")
    print(open_answer_line(answer))
    return 0 if answer["capacity_rate"] is not None else 1


def _g(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3g}"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"
