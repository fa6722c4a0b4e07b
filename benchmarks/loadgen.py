"""How many real-time streams one load-generator process holds: yapbench's Locust user vs a seed-style client.

The reference servers (synthetic engine; one by default, --servers K for K) run pinned to cores 0..K-1, the client
under test pinned to core K; a client spreads its sessions over the servers round robin, so that the servers are not
what is measured. For each stream count the client ramps up, settles, then is measured over a window (the ramp is
excluded): p50/p99 send lag (actual minus scheduled send time of each frame), frames delivered (every finished
session sent all its frames; the servers processed at least as many), the client's CPU (share of one core, and
microseconds per frame sent: with `--samples long.mp3` few sessions end, so that is the per-frame cost of sending,
pacing and receiving; the default samples add the per-session cost) and RSS. A count is *held* when the window's
p99 send lag is <= 10 ms and every frame was delivered.

    .venv/bin/python benchmarks/loadgen.py --streams 250,500,1000,1500,2000 --baseline-streams 100,200,300,400
    python3 benchmarks/loadgen.py --servers 3 --streams 1500,2000 --baseline-streams ""   # a host with 4+ cores

Prints one table row per run and writes all rows as JSON (--json).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psutil

from yapbench.runlog import read_send_lag, read_session_records
from yapbench.server.launch import ServerProcess, start_server

REPO = Path(__file__).resolve().parent.parent
LAG_LIMIT_MS = 10.0
DEFAULT_SAMPLES = "mid.wav,real/en_*"  # English clips of 1.5-11.7 s: sessions start and end all the time


@dataclass
class Row:
    client: str
    streams: int
    lag_p50_ms: float
    lag_p99_ms: float
    frames_in_window: int
    sessions: int
    sessions_ok: int
    frames_planned: int
    frames_sent: int
    server_accepted: int
    server_frames: int
    sessions_in_window: int  # sessions that ended in the window
    client_cpu: float  # share of one core over the window
    client_us_per_frame: float  # client CPU (user + system) over the window per frame sent in it
    client_rss_mb: float  # maximum over the window
    client_waiting: float  # share of the window the client was runnable but another process had its core
    server_cpu: float

    @property
    def delivered(self) -> bool:
        return (self.sessions_ok == self.sessions > 0 and self.frames_sent == self.frames_planned
                and self.server_accepted == self.sessions and self.server_frames >= self.frames_sent)

    @property
    def held(self) -> bool:
        return self.delivered and self.lag_p99_ms <= LAG_LIMIT_MS


def pin(pid: int, cpu: int) -> None:
    """Every thread of the process (sched_setaffinity on a pid moves only its main thread)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), {cpu})
        except ProcessLookupError:
            pass


class ServerLog:
    """Counts from the server's event log, for the part written since the last `mark()`."""

    def __init__(self, server: ServerProcess) -> None:
        assert server.event_log is not None
        self.path = server.event_log
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def counts(self) -> tuple[int, int]:
        """(connections accepted, frames processed for them) since the mark; probes excluded."""
        accepted: set[int] = set()
        frames = 0
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            for line in f:
                if b'"accept"' in line or b'"release"' in line:
                    e = json.loads(line)
                    if e.get("probe"):
                        continue
                    if e["ev"] == "accept":
                        accepted.add(e["conn"])
                    elif e["conn"] in accepted:
                        frames += e["steps"]
        return len(accepted), frames


def run_queue_wait_s(pid: int) -> float:
    """Seconds the process's main thread spent runnable but not running (the machine is shared: other engineers'
    processes compete for the pinned core, and a stream that waits for the CPU is late whatever the code does)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[1]) / 1e9


def watch(proc: subprocess.Popen, servers: list[ServerProcess], window: tuple[float, float]) -> tuple[float, ...]:
    """Sleep through the run; return the client's CPU share, max RSS (MB) and run-queue wait share, and the
    servers' CPU (the busiest one's share of its core), over the window."""
    client, srv = psutil.Process(proc.pid), [psutil.Process(s.process.pid) for s in servers]
    start = end = (0.0,) * (2 + len(srv))
    rss = 0.0
    measuring = False
    while proc.poll() is None:
        now = time.time()
        try:
            if measuring or now >= window[0]:
                sample = (sum(client.cpu_times()[:2]), run_queue_wait_s(proc.pid),
                          *(sum(p.cpu_times()[:2]) for p in srv))
            if not measuring and now >= window[0]:
                measuring, t_start, start = True, now, sample
            if measuring and now <= window[1]:
                rss = max(rss, client.memory_info().rss)
                t_end, end = now, sample
        except (psutil.NoSuchProcess, FileNotFoundError):
            break
        time.sleep(0.5)
    if not measuring:
        return (float("nan"),) * 4
    span = max(t_end - t_start, 1e-9)
    cpu, wait, *server_cpu = ((b - a) / span for a, b in zip(start, end))
    return cpu, rss / 1e6, wait, max(server_cpu)


def client_command(client: str, args: argparse.Namespace, servers: list[ServerProcess], streams: int,
                   run_dir: Path, run_time: float) -> list[str]:
    python = ["nice", "-n", str(args.nice), sys.executable]
    client_cpu = str(len(servers))  # the core after the servers'
    if client == "yapbench":
        return ["taskset", "-c", client_cpu, *python, "-m", "locust", "-f", str(REPO / "locustfiles/stt.py"),
                "--headless", "--only-summary", "--loglevel", "WARNING", "-u", str(streams),
                "-r", f"{streams / args.ramp:g}", "-t", f"{run_time:g}s", "--stop-timeout", f"{args.stop_timeout:g}",
                "--host", ",".join(s.url for s in servers), "--run-dir", str(run_dir), "--samples", args.samples,
                "--think-time", "0", "--speed", "1", "--no-report"]
    # (the seed-style client takes one URL; it holds a few hundred streams, which one server carries)
    return ["taskset", "-c", client_cpu, *python, str(REPO / "benchmarks/seed_style_client.py"),
            "--url", servers[0].url, "--streams", str(streams), "--ramp", f"{args.ramp:g}",
            "--run-time", f"{run_time:g}", "--samples", args.samples, "--run-dir", str(run_dir)]


def measure(client: str, streams: int, args: argparse.Namespace, servers: list[ServerProcess], logs: list[ServerLog],
            workdir: Path) -> Row:
    run_dir = workdir / f"{client}-{streams}"
    run_time = args.ramp + args.settle + args.window
    for log in logs:
        log.mark()
    t0 = time.time()
    window = (t0 + args.ramp + args.settle, t0 + args.ramp + args.settle + args.window)
    proc = subprocess.Popen(client_command(client, args, servers, streams, run_dir, run_time), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=open(workdir / f"{client}-{streams}.log", "wb"))
    try:
        cpu, rss, waiting, server_cpu = watch(proc, servers, window)
        proc.wait(timeout=run_time + 120)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(1.0)  # the server writes releases (and flushes its log) shortly after the last close
    lag = read_send_lag(run_dir)
    in_window = lag["lag_ms"][(lag["t"] >= window[0]) & (lag["t"] <= window[1])]
    sessions = read_session_records(run_dir)
    ok = [s for s in sessions if s["outcome"] == "ok"]
    ended_in_window = sum(window[0] <= s["ended_at"] <= window[1] for s in sessions)
    accepted, server_frames = (sum(c) for c in zip(*(log.counts() for log in logs)))
    p50, p99 = (np.percentile(in_window, [50, 99]) if in_window.size else (float("nan"),) * 2)
    us_per_frame = cpu * args.window / in_window.size * 1e6 if in_window.size else float("nan")
    return Row(client, streams, round(float(p50), 2), round(float(p99), 2), int(in_window.size), len(sessions),
               len(ok), sum(s["frames_planned"] for s in sessions), sum(s["frames_sent"] for s in sessions),
               accepted, server_frames, ended_in_window, round(cpu, 3), round(us_per_frame, 1), round(rss, 1),
               round(waiting, 3), round(server_cpu, 3))


HEADER = ("client", "streams", "send lag p50 ms", "p99 ms", "frames in window", "sessions ok/all",
          "frames sent/planned", "server accepted", "server frames", "sessions ended in window", "client CPU",
          "client CPU us/frame", "client RSS MB", "client waiting for CPU", "busiest server CPU", "held")


def table_line(row: Row) -> str:
    cells = (row.client, row.streams, row.lag_p50_ms, row.lag_p99_ms, row.frames_in_window,
             f"{row.sessions_ok}/{row.sessions}", f"{row.frames_sent}/{row.frames_planned}", row.server_accepted,
             row.server_frames, row.sessions_in_window, f"{row.client_cpu:.0%}", row.client_us_per_frame,
             row.client_rss_mb, f"{row.client_waiting:.0%}", f"{row.server_cpu:.0%}", "yes" if row.held else "no")
    return "| " + " | ".join(str(c) for c in cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="250,500,1000,1500,2000", help="yapbench stream counts")
    parser.add_argument("--baseline-streams", default="100,200,300,400", help="seed-style client stream counts")
    parser.add_argument("--ramp", type=float, default=15.0, help="seconds over which the streams start")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after the ramp before measuring")
    parser.add_argument("--window", type=float, default=30.0, help="seconds measured")
    parser.add_argument("--samples", default=DEFAULT_SAMPLES,
                        help="yapbench's --samples (long.mp3: 115 s clips, few sessions end: the per-frame cost)")
    parser.add_argument("--stop-timeout", type=float, default=60.0,
                        help="seconds sessions in flight may finish after the run (1 with long.mp3: its sessions "
                             "would run 115 s; the cancelled ones make the row 'not delivered', the cost is measured)")
    parser.add_argument("--servers", type=int, default=1,
                        help="reference servers, pinned to cores 0..K-1 (the client runs on core K)")
    parser.add_argument("--config", default="", help="server config (default: the 1B config, which sends Steps)")
    parser.add_argument("--step-ms", type=float, default=10.0, help="the synthetic engine's simulated step time")
    parser.add_argument("--nice", type=int, default=0,
                        help="niceness of server and clients (e.g. -10 as root on a machine shared with other work: "
                             "the 'client waiting for CPU' column shows how much the neighbours took)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()

    counts = [("yapbench", int(n)) for n in args.streams.split(",") if n]
    counts += [("seed-style", int(n)) for n in args.baseline_streams.split(",") if n]
    if not 0 < args.servers < len(os.sched_getaffinity(0)):
        sys.exit(f"--servers {args.servers}: between 1 and {len(os.sched_getaffinity(0)) - 1} on this machine "
                 "(one core is the client's)")
    servers: list[ServerProcess] = []
    rows: list[Row] = []
    try:
        for core in range(args.servers):
            server = start_server(engine="synthetic", batch_size=4096, step_ms=args.step_ms, event_log=True,
                                  silent=True, config=args.config or None, timeout=60)
            servers.append(server)
            pin(server.process.pid, core)
            os.setpriority(os.PRIO_PROCESS, server.process.pid, args.nice)
            print(f"server: {' '.join(server.args)} (pid {server.process.pid}, cpu {core})")
        logs = [ServerLog(server) for server in servers]
        workdir = Path(tempfile.mkdtemp(prefix="yapbench-loadgen-"))
        print(f"client on cpu {len(servers)}; runs in {workdir}")
        print("| " + " | ".join(HEADER) + " |")
        print("|" + "---|" * len(HEADER), flush=True)
        for client, streams in counts:
            row = measure(client, streams, args, servers, logs, workdir)
            rows.append(row)
            print(table_line(row), flush=True)
            for server in servers:
                if not server.alive():
                    sys.exit(f"a server died:\n{server.log_text()[-2000:]}")
    finally:
        for server in servers:
            server.stop()
    for client in ("yapbench", "seed-style"):
        held = [r.streams for r in rows if r.client == client and r.held]
        print(f"{client}: holds {max(held) if held else 0} real-time streams per process")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) | {"held": r.held} for r in rows], indent=1))


if __name__ == "__main__":
    main()
