"""Report build time and peak memory for a large run: 1,000,000+ word records, 43,000 sessions, ~5.6 M send lags;
or, with --hours/--streams, a run of that many real-time streams for that long (one hour at 10,000 streams:
~3.6 M sessions, ~90 M words, ~450 M send lags).

    .venv/bin/python benchmarks/report_build.py [--runs 3] [--dir /tmp/yapbench-report-bench] [--summary-only]
    .venv/bin/python benchmarks/report_build.py --streams 10000 --hours 1 --dir /tmp/yapbench-hour --runs 1

The run directory is generated once through the real writer (RunLog.append) and reused when present: the small
one session by session (yapbench.report.synthetic), the long one in vectorised batches (`bulk_run`), with the
phase times a Locust load records (so the build summarises the ramp, steady state and drain, as for a real run).
Each measured build runs in a fresh process, so its peak RSS (ru_maxrss) is the build's alone.
Goals: issue 5, <= 15 s and <= 2 GB at a million words; issue 14, <= 60 s and <= 4 GB at one hour of 10,000
streams. Results go in benchmarks/RESULTS.md.
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
ru, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"seconds": time.perf_counter() - t,
                  "cpu_s": ru.ru_utime + ru.ru_stime + kids.ru_utime + kids.ru_stime,
                  "peak_rss_mib": ru.ru_maxrss / 1024, "worker_peak_rss_mib": kids.ru_maxrss / 1024,
                  "words": s["word_lag"]["count"], "sessions": s["sessions"], "send_lags": s["send_lag"]["count"]}))
"""


def ensure_run(run_dir: Path, streams: int, hours: float) -> None:
    if (run_dir / "run.json").exists():
        return
    t = time.perf_counter()
    if streams:
        bulk_run(run_dir, streams, hours * 3600.0)
    else:
        from yapbench.report.synthetic import Spec, make_run

        make_run(run_dir, Spec(sessions=SESSIONS, duration_s=1800.0, targets=TARGETS, seed=7))
    print(f"generated {run_dir} in {time.perf_counter() - t:.1f} s", file=sys.stderr)


TARGETS = ("ws://gpu-a:8080", "ws://gpu-b:8080")
FRAME_S = 0.08
WORD_S = 0.4  # one word per 0.4 s of speech: 2.5 words/s per stream, 90 M words in an hour at 10,000 streams
BATCH = 20_000


SPAWN_S = 20.0  # the users start over this long, as Locust's -r would have them
DRAIN_S = 12.0  # no session starts in the last 12 s: the longest (12 s of speech) ends with the run


def phase_times(t0: float, duration_s: float) -> dict:
    """run.json's phase boundaries as a Locust load records them (report.phases): all users started after SPAWN_S,
    the load's time up when the last session starts (a drain of one session length follows), --settle 10."""
    from yapbench.report.phases import SETTLE_KEY, SPAWNING_COMPLETE_KEY, STOPPING_KEY

    return {SPAWNING_COMPLETE_KEY: t0 + SPAWN_S, STOPPING_KEY: t0 + duration_s - DRAIN_S, SETTLE_KEY: 10.0}


def bulk_run(run_dir: Path, streams: int, duration_s: float, seed: int = 11) -> None:
    """`streams` real-time streams for `duration_s`, each a back-to-back series of sessions of 8-12 s of speech,
    written through RunLog.append in batches; values drawn vectorised (numpy), records shaped as the load's."""
    import numpy as np

    from yapbench.metrics import SessionResult
    from yapbench.report.synthetic import SAMPLES
    from yapbench.runlog import SEND_LAG_DTYPE, WORD_DTYPE, RunLog

    rng = np.random.default_rng(seed)
    t0 = 1_700_000_000.0
    log = RunLog(run_dir)
    names = list(SAMPLES)
    log.write_meta({"targets": list(TARGETS), "target": ",".join(TARGETS), "users": streams,
                    "spawn_rate": streams / SPAWN_S, "speed": 1.0, "shape": "", "started_at": t0,
                    "ended_at": t0 + duration_s, "command": "benchmarks/report_build.py", "yapbench_version": "bench",
                    **phase_times(t0, duration_s),
                    "samples": {n: {"transcript": t, "language": "en", "duration_s": 10.0}
                                for n, t in SAMPLES.items()}})
    mean_session_s = 10.0 + 0.5  # speech + flush and think time
    n = int(streams * duration_s / mean_session_s)
    template = SessionResult("", "", "", 1.0, 0.0).record()
    refs = {name: text.split() for name, text in SAMPLES.items()}
    transcripts: dict[tuple[str, int], str] = {}
    for lo in range(0, n, BATCH):
        m = min(BATCH, n - lo)
        started = t0 + (lo + np.sort(rng.random(m)) * m) / n * (duration_s - DRAIN_S)  # finishing in time order
        audio = rng.uniform(8.0, 12.0, m)
        frames = (audio / FRAME_S).astype(np.int64)
        nwords = (audio / WORD_S).astype(np.int64)
        rejected = rng.random(m) < 0.01
        frames[rejected] = 0
        nwords[rejected] = 0
        # Words: arrival t after the session start, lag ~ 400 ms; a few without EndWord.
        w = np.zeros(int(nwords.sum()), dtype=WORD_DTYPE)
        first = np.repeat(np.cumsum(nwords) - nwords, nwords)
        w["idx"] = np.arange(w.size) - first
        w["start_time"] = w["idx"] * WORD_S
        w["lag_ms"] = rng.gamma(3.0, 30.0, w.size) + 300.0
        w["t"] = 0.02 + w["start_time"] + w["lag_ms"] / 1000.0
        w["stop_time"] = w["start_time"] + 0.3
        w["end_lag_ms"] = np.where(rng.random(w.size) < 0.02, np.nan, w["lag_ms"] + 30.0)
        # Send lags: ~1 ms, a long tail; one frame every 80 ms from the session's first send.
        lag = np.empty(int(frames.sum()), dtype=SEND_LAG_DTYPE)
        ffirst = np.repeat(np.cumsum(frames) - frames, frames)
        lag["t"] = np.repeat(started + 0.02, frames) + (np.arange(lag.size) - ffirst) * FRAME_S
        lag["lag_ms"] = rng.exponential(1.0, lag.size)
        wbytes, lbytes = w.tobytes(), lag.tobytes()
        wend = (np.cumsum(nwords) * WORD_DTYPE.itemsize).tolist()
        lend = (np.cumsum(frames) * SEND_LAG_DTYPE.itemsize).tolist()
        wlen = (nwords * WORD_DTYPE.itemsize).tolist()
        llen = (frames * SEND_LAG_DTYPE.itemsize).tolist()
        first_lag = w["lag_ms"][np.minimum(np.cumsum(nwords) - nwords, max(w.size - 1, 0))].tolist() if w.size \
            else [0.0] * m
        starts, audios, nw, nf, rej = started.tolist(), audio.tolist(), nwords.tolist(), frames.tolist(), \
            rejected.tolist()
        batch = []
        for i in range(m):
            k = lo + i
            sample = names[k % len(names)]
            rec = dict(template, session_id=f"s{k:08d}", worker=f"w{k % 8}", target=TARGETS[k % 2], sample=sample,
                       started_at=starts[i], ended_at=starts[i] + audios[i] + 0.5)
            if rej[i]:
                rec.update(outcome="rejected", error="no free channels", connect_ms=2.0)
            else:
                key = (sample, nw[i])
                if key not in transcripts:
                    ref = refs[sample]
                    transcripts[key] = " ".join(ref[j % len(ref)] for j in range(nw[i]))
                rec.update(outcome="ok", connect_ms=2.0, ready_ms=15.0, first_response_ms=90.0,
                           first_word_ms=first_lag[i], finalize_ms=320.0, backlog_max_ms=95.0, audio_s=audios[i],
                           frames_planned=nf[i], frames_sent=nf[i], steps=nf[i], words=nw[i], send_lag_p50_ms=0.7,
                           send_lag_p99_ms=4.6, send_lag_max_ms=9.0, transcript=transcripts[key])
            batch.append((rec, wbytes[wend[i] - wlen[i]: wend[i]], lbytes[lend[i] - llen[i]: lend[i]]))
        log.append(batch)
    log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="builds to time (0: only generate the run directory)")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/yapbench-report-bench"))
    parser.add_argument("--summary-only", action="store_true", help="time summarize_run (no plots) instead")
    parser.add_argument("--streams", type=int, default=0, help="a long run of this many streams (bulk_run)")
    parser.add_argument("--hours", type=float, default=1.0, help="its length (with --streams)")
    args = parser.parse_args()
    ensure_run(args.dir, args.streams, args.hours)
    if args.runs < 1:
        return 0
    mode = "summary" if args.summary_only else "report"
    results = []
    for i in range(args.runs):
        out = subprocess.run([sys.executable, "-c", CHILD, str(args.dir), mode], check=True, capture_output=True,
                             text=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"run {i + 1}: {r['seconds']:.2f} s ({r['cpu_s']:.1f} s CPU with the decoding workers, imports "
              f"included), peak RSS {r['peak_rss_mib']:.0f} MiB (each worker: {r['worker_peak_rss_mib']:.0f} MiB)",
              file=sys.stderr)
    secs = statistics.median(r["seconds"] for r in results)
    rss = statistics.median(r["peak_rss_mib"] for r in results)
    print(json.dumps({
        "mode": mode, "run_dir_mib": round(sum(f.stat().st_size for f in args.dir.iterdir()) / 2**20),
        "machine": f"{platform.node()} {platform.machine()} {_cpus()} CPUs, Python {platform.python_version()}",
        "words": results[0]["words"], "sessions": results[0]["sessions"], "send_lags": results[0]["send_lags"],
        "runs": [round(r["seconds"], 2) for r in results], "median_s": round(secs, 2),
        "median_peak_rss_mib": round(rss),
        "median_cpu_s": round(statistics.median(r["cpu_s"] for r in results), 2),
        "worker_peak_rss_mib": round(max(r["worker_peak_rss_mib"] for r in results)),
    }, indent=2))
    return 0


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    sys.exit(main())
