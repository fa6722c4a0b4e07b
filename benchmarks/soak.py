"""Soak: a long headless Locust load against the reference server, watching both processes for leaks.

Starts `yapbench serve` (synthetic engine, one slot per stream), runs `locust -f locustfiles/stt.py --headless`
with --streams users for --duration seconds, and every --interval seconds records the resident memory (RSS), open
file descriptors and CPU of the generator (the Locust process and its children) and of the server, plus the
server's used slots, to a CSV. At the end it prints a summary: RSS growth from the end of the warm-up to the end
of the run (median of the first and last minute of the measured window, so one sample's noise does not decide),
the range of descriptor counts after the warm-up, and the run's session outcomes.

    .venv/bin/python benchmarks/soak.py --streams 300 --duration 1800 --csv /tmp/soak.csv

Bounded: the load stops at --duration (Locust's -t), and the Locust process is killed if it is still alive
--grace seconds later.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from yapbench.runlog import read_session_records  # noqa: E402
from yapbench.server.launch import start_server  # noqa: E402

LOCUSTFILE = ROOT / "locustfiles" / "stt.py"
COLUMNS = ("elapsed_s", "gen_rss_mb", "gen_fds", "gen_cpu_pct", "srv_rss_mb", "srv_fds", "srv_cpu_pct", "used_slots")
WINDOW_S = 60.0  # the first and last minute of the measured window are compared


def tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def usage(procs: list[psutil.Process]) -> tuple[float, int, float]:
    """RSS (MiB), open descriptors and CPU percent (since the previous call), summed over live processes."""
    rss, fds, cpu = 0, 0, 0.0
    for p in procs:
        try:
            with p.oneshot():
                rss += p.memory_info().rss
                fds += p.num_fds()
                cpu += p.cpu_percent(None)
        except psutil.NoSuchProcess:
            continue
    return rss / 2**20, fds, cpu


def used_slots(http_url: str) -> int | None:
    try:
        with urllib.request.urlopen(http_url + "/api/modules_info", timeout=2) as answer:
            return sum(int(m.get("used_slots", 0)) for m in json.load(answer))
    except (OSError, ValueError):
        return None


def summarize(rows: list[dict], warmup_s: float, duration_s: float, sessions: list[dict]) -> dict:
    # The wind-down after the run time (users stopping) is not steady state: only warm-up..duration counts.
    measured = [r for r in rows if warmup_s <= r["elapsed_s"] <= duration_s]
    if not measured:
        return {"error": "no samples after the warm-up"}
    start, end = measured[0]["elapsed_s"], measured[-1]["elapsed_s"]
    first = [r for r in measured if r["elapsed_s"] <= start + WINDOW_S]
    last = [r for r in measured if r["elapsed_s"] >= end - WINDOW_S]
    out: dict = {"samples": len(rows), "measured_s": round(end - start)}
    for who in ("gen", "srv"):
        a = statistics.median(r[f"{who}_rss_mb"] for r in first)
        b = statistics.median(r[f"{who}_rss_mb"] for r in last)
        fds = [r[f"{who}_fds"] for r in measured]
        out[who] = {"rss_start_mb": round(a, 1), "rss_end_mb": round(b, 1),
                    "rss_growth_pct": round(100 * (b - a) / a, 2),
                    "rss_max_mb": round(max(r[f"{who}_rss_mb"] for r in measured), 1),
                    "fds_min": min(fds), "fds_max": max(fds),
                    "cpu_pct_median": round(statistics.median(r[f"{who}_cpu_pct"] for r in measured), 1)}
        # Descriptors per open stream are what must stay flat: the count itself follows the load.
        extra = [r[f"{who}_fds"] - r["used_slots"] for r in measured if r["used_slots"] != ""]
        out[who]["fds_minus_used_slots"] = [min(extra), max(extra)] if extra else None
    slots = [r["used_slots"] for r in measured if r["used_slots"] != ""]
    out["used_slots_median"] = statistics.median(slots) if slots else None
    out["sessions"] = len(sessions)
    out["outcomes"] = dict(Counter(s["outcome"] for s in sessions))
    lags = [s["send_lag_p99_ms"] for s in sessions if s.get("send_lag_p99_ms") is not None]
    out["send_lag_p99_ms_median"] = round(statistics.median(lags), 2) if lags else None
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=300, help="Locust users, each one stream at a time")
    ap.add_argument("--duration", type=float, default=1800.0, help="seconds of load (Locust's -t)")
    ap.add_argument("--warmup", type=float, default=300.0, help="seconds left out of the growth figures")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    ap.add_argument("--spawn-rate", type=float, default=20.0)
    ap.add_argument("--speed", type=float, default=1.0)
    ap.add_argument("--samples", default="real/en_*")
    ap.add_argument("--think-time", type=float, default=1.0)
    ap.add_argument("--grace", type=float, default=120.0, help="seconds after --duration before Locust is killed")
    ap.add_argument("--csv", default="", help="samples CSV (default: in the run directory)")
    ap.add_argument("--run-dir", default="", help="Locust's run directory (default: a temporary one)")
    args = ap.parse_args()

    run_dir = Path(args.run_dir or tempfile.mkdtemp(prefix="yapbench-soak-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    csv_path = Path(args.csv or run_dir / "soak.csv")
    server = start_server(batch_size=args.streams)
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
           "-u", str(args.streams), "-r", str(args.spawn_rate), "-t", f"{args.duration:.0f}s", "--host", server.url,
           "--run-dir", str(run_dir), "--samples", args.samples, "--think-time", str(args.think_time),
           "--speed", str(args.speed), "--stop-timeout", "30", "--no-report"]
    print(f"soak: {args.streams} streams for {args.duration:.0f} s against {server.url}; run directory {run_dir}; "
          f"samples to {csv_path}", flush=True)
    rows: list[dict] = []
    with server, open(run_dir / "locust.log", "w") as log:
        locust = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        gen, srv = psutil.Process(locust.pid), psutil.Process(server.process.pid)
        t0 = time.monotonic()
        hard_stop = t0 + args.duration + args.grace
        with open(csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS)
            writer.writeheader()
            while locust.poll() is None and time.monotonic() < hard_stop:
                g, s = usage(tree(gen)), usage([srv])
                slots = used_slots(server.http_url)
                row = {"elapsed_s": round(time.monotonic() - t0, 1), "gen_rss_mb": round(g[0], 1), "gen_fds": g[1],
                       "gen_cpu_pct": round(g[2], 1), "srv_rss_mb": round(s[0], 1), "srv_fds": s[1],
                       "srv_cpu_pct": round(s[2], 1), "used_slots": "" if slots is None else slots}
                rows.append(row)
                writer.writerow(row)
                f.flush()
                time.sleep(args.interval)
        if locust.poll() is None:
            print("soak: Locust outlived its run time by --grace; killing it", flush=True)
            locust.kill()
        code = locust.wait()
    summary = summarize(rows, args.warmup, args.duration, read_session_records(run_dir))
    summary["locust_exit_code"] = code
    (run_dir / "soak-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
