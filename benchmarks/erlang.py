"""Measured blocking against Erlang B: open-loop runs on the reference server at several offered loads.

Starts `yapbench serve --batch-size N` (synthetic engine, 1 ms steps), then for each arrival rate runs
`yapbench run --arrival-rate R --arrival poisson` against it and reads the run's summary.json: the measured
arrival rate, mean holding time, offered load, measured blocking, and Erlang B for the server's slots at that
offered load. Prints a table and writes one JSON line per rate.

    .venv/bin/python benchmarks/erlang.py --slots 8 --rates 8,14,20,28 --duration 60 --out /tmp/erlang.jsonl
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from yapbench.server.launch import start_server  # noqa: E402

SAMPLES = "real/en_ljspeech_LJ002*"  # two ~1.5 s clips: short holding times, many arrivals per minute
KEYS = ("measured_arrival_rate", "holding_s", "offered_erlangs", "carried_erlangs", "attempts", "blocking", "erlang_b",
        "slots")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slots", type=int, default=8)
    ap.add_argument("--rates", default="8,14,20,28", help="arrival rates, sessions/s, comma-separated")
    ap.add_argument("--duration", type=int, default=60, help="seconds per rate")
    ap.add_argument("--speed", type=float, default=4.0)
    ap.add_argument("--users", type=int, default=200, help="the cap on concurrent sessions")
    ap.add_argument("--out", type=Path, default=None, help="JSON lines, one per rate")
    args = ap.parse_args()
    rows = []
    with start_server(batch_size=args.slots, step_ms=1) as server, tempfile.TemporaryDirectory() as tmp:
        for rate in (float(r) for r in args.rates.split(",")):
            run_dir = Path(tmp) / f"rate-{rate:g}"
            subprocess.run([sys.executable, "-m", "yapbench.cli", "run", "--host", server.url, "--run-dir",
                            str(run_dir), "--arrival-rate", str(rate), "--users", str(args.users),
                            "--spawn-rate", str(args.users), "--run-time",
                            f"{args.duration}s", "--samples", SAMPLES, "--speed", str(args.speed), "--no-report"],
                           cwd=ROOT, capture_output=True, timeout=args.duration + 300)
            s = json.loads((run_dir / "summary.json").read_text())
            row = {"rate": rate, **{k: s.get(k) for k in KEYS}, "dropped": s["outcomes"].get("dropped", 0),
                   "send_lag_p99_ms": s["send_lag"].get("p99")}
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"\n| rate /s | measured /s | holding s | offered Erl | attempts | blocking | Erlang B ({args.slots}) "
          "| dropped |")
    for r in rows:
        print(f"| {r['rate']:g} | {r['measured_arrival_rate']:.2f} | {r['holding_s']:.3f} "
              f"| {r['offered_erlangs']:.2f} | "
              f"{r['attempts']} | {100 * r['blocking']:.1f} % | {100 * r['erlang_b']:.1f} % | {r['dropped']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
