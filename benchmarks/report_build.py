"""Report build time and peak memory for a large run: 1,000,000+ word records, 43,000 sessions, ~5.6 M send lags.

    .venv/bin/python benchmarks/report_build.py [--runs 3] [--dir /tmp/yapbench-report-bench] [--summary-only]

The run directory is generated once through the real writer (yapbench.report.synthetic) and reused when present.
Each measured build runs in a fresh process, so its peak RSS (ru_maxrss) is the build's alone.
Goal (issue 5): <= 15 s and <= 2 GB peak on a 2-core machine. Results go in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

SESSIONS = 43_000  # ~23.3 words per session on the synthetic samples: just over a million words

CHILD = """
import json, resource, sys, time
from yapbench.report import build_report, summarize_run
t = time.perf_counter()
s = (summarize_run if sys.argv[2] == "summary" else build_report)(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - t, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "words": s["word_lag"]["count"], "sessions": s["sessions"], "send_lags": s["send_lag"]["count"]}))
"""


def ensure_run(run_dir: Path) -> None:
    if (run_dir / "run.json").exists():
        return
    from yapbench.report.synthetic import Spec, make_run

    t = time.perf_counter()
    make_run(run_dir, Spec(sessions=SESSIONS, duration_s=1800.0, targets=("ws://gpu-a:8080", "ws://gpu-b:8080"),
                           seed=7))
    print(f"generated {run_dir} in {time.perf_counter() - t:.1f} s", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/yapbench-report-bench"))
    parser.add_argument("--summary-only", action="store_true", help="time summarize_run (no plots) instead")
    args = parser.parse_args()
    ensure_run(args.dir)
    mode = "summary" if args.summary_only else "report"
    results = []
    for i in range(args.runs):
        out = subprocess.run([sys.executable, "-c", CHILD, str(args.dir), mode], check=True, capture_output=True,
                             text=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"run {i + 1}: {r['seconds']:.2f} s, peak RSS {r['peak_rss_mib']:.0f} MiB", file=sys.stderr)
    secs = statistics.median(r["seconds"] for r in results)
    rss = statistics.median(r["peak_rss_mib"] for r in results)
    print(json.dumps({
        "mode": mode, "machine": f"{platform.node()} {platform.machine()} {_cpus()} CPUs, Python {platform.python_version()}",
        "words": results[0]["words"], "sessions": results[0]["sessions"], "send_lags": results[0]["send_lags"],
        "runs": [round(r["seconds"], 2) for r in results], "median_s": round(secs, 2), "median_peak_rss_mib": round(rss),
    }, indent=2))
    return 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main())
