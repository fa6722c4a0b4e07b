"""Scale-out: how many real-time streams one host's generator holds through Locust's distributed mode.

On an N-core host, K reference servers (synthetic engine, event log on for the accounting) are pinned one per core
on cores 0..K-1, and the generator runs on the other cores: a standalone Locust process (W = 0), `--processes W`
(one master forking W workers), or a `--master` and W `--worker` processes (each pinned to its own core). Each
point ramps to U users at R users/s per worker process, runs a steady window, and stops gracefully. Per point:

- streams: the mean number of sessions streaming during the window (from the records), and the users asked for;
- send-lag p99 over the whole run, the ramp, and the steady window (actual minus scheduled send time per frame);
- server backlog p99 (each session's largest backlog, sessions of the window);
- sessions in the master's run directory against the servers' accepts + rejects, words recorded against sent;
- master CPU (share of one core) and peak RSS; generator and server CPU in total.

    python benchmarks/scaleout.py --servers 8 --workers 7 --users 10500 --mode master-worker

A point *holds* when the whole-run send-lag p99 is <= 10 ms, every session and word is accounted for, and every
session the load did not cut ended ok.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import psutil

from loadgen import LAG_LIMIT_MS, pin
from yapbench.runlog import read_meta, read_send_lag, read_session_records
from yapbench.server.launch import ServerProcess, start_server

REPO = Path(__file__).resolve().parent.parent
LOCUSTFILE = REPO / "locustfiles" / "stt.py"
DEFAULT_SAMPLES = "mid.wav,real/en_*"


@dataclass
class Point:
    mode: str
    servers: int
    workers: int
    users: int
    spawn_rate: float  # users/s in total
    streams_mean: float  # sessions streaming, averaged over the window
    lag_p99_all_ms: float
    lag_p99_ramp_ms: float
    lag_p99_steady_ms: float
    lag_max_steady_ms: float
    frames_late_share: float  # frames sent more than 10 ms late, over the whole run
    backlog_p99_ms: float
    sessions: int
    sessions_ok: int
    sessions_cancelled: int
    server_sessions: int  # accepts + rejects the servers logged
    words_recorded: int
    words_sent: int  # Words the servers sent on connections they accepted, before echoing that connection's Marker
    words_after_marker: int  # sent after the echo: a client that ends at the echo never reads them (see server_counts)
    master_cpu: float  # share of one core over the window
    master_rss_mb: float
    generator_cpu: float  # cores, all generator processes together, over the window
    generator_sys: float  # of which in the kernel (on loopback the sender's send() also runs the receive path)
    server_cpu: float  # cores, all servers together
    workers_lost: int
    lag_p99_per_s: list[float]  # each second of the run, from the test's start: where a stall happened

    @property
    def accounted(self) -> bool:
        return self.sessions == self.server_sessions and self.words_recorded == self.words_sent

    @property
    def held(self) -> bool:
        served = self.sessions - self.sessions_cancelled
        return self.accounted and self.lag_p99_all_ms <= LAG_LIMIT_MS and self.sessions_ok == served > 0


def server_counts(servers: list[ServerProcess]) -> tuple[int, int, int]:
    """(sessions the servers saw: accepts + rejects, Words they sent on accepted connections before that connection's
    Marker echo, Words sent after it); probes excluded.

    Under load the server echoes a Marker after a number of global steps, not of this slot's frames, so a Word can
    follow the echo (docs/protocol.md §3). Kyutai's clients and yapbench end a session
    at the echo, so such Words are never read: complete records means every Word sent before the echo recorded."""
    sessions = words = after = 0
    for server in servers:
        accepted: set[int] = set()
        echoed: set[int] = set()
        with open(server.event_log, "rb") as f:
            for line in f:
                if b'"ev":"send"' in line:
                    if b'"type":"Word"' in line or b'"type":"Marker"' in line:
                        e = json.loads(line)
                        if e["conn"] not in accepted:
                            continue
                        if e["type"] == "Marker":
                            echoed.add(e["conn"])
                        elif e["conn"] in echoed:
                            after += 1
                        else:
                            words += 1
                elif b'"ev":"accept"' in line or b'"ev":"reject"' in line:
                    e = json.loads(line)
                    if not e.get("probe"):
                        sessions += 1
                        if e["ev"] == "accept":
                            accepted.add(e["conn"])
    return sessions, words, after


def locust_base(args: argparse.Namespace, hosts: str, run_dir: Path) -> list[str]:
    procs = max(args.workers, 1)
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
            "--loglevel", "WARNING", "-u", str(args.users), "-r", f"{args.spawn_rate * procs:g}",
            "-t", f"{math.ceil(args.ramp_s + args.settle + args.window)}s", "--stop-timeout", "30", "--host", hosts,
            "--run-dir", str(run_dir),
            "--samples", args.samples, "--think-time", str(args.think_time), "--no-report"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_generator(args: argparse.Namespace, hosts: str, run_dir: Path, cores: list[int],
                    log) -> tuple[subprocess.Popen, list[subprocess.Popen]]:
    """(the master or standalone process, the separately started workers)."""
    port = str(free_port())  # not Locust's default 5557: another run on the host may hold it
    base = locust_base(args, hosts, run_dir) + ["--master-bind-host", "127.0.0.1", "--master-bind-port", port,
                                                   "--master-port", port]  # --processes: its workers dial this
    if args.mode == "master-worker" and args.workers:
        master = subprocess.Popen(["taskset", "-c", str(cores[0]), *base, "--master", "--expect-workers",
                                   str(args.workers)],
                                  cwd=REPO, stdout=subprocess.DEVNULL, stderr=log)
        workers = [subprocess.Popen(["taskset", "-c",
                                     str(cores[1 + i % (len(cores) - 1)] if len(cores) > 1 else cores[0]),
                                     sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker",
                                     "--master-host", "127.0.0.1", "--master-port", port,
                                     "--loglevel", "WARNING"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=log)
                   for i in range(args.workers)]
        return master, workers
    extra = ["--processes", str(args.workers)] if args.workers else []
    cpus = ",".join(map(str, cores))
    return subprocess.Popen(["taskset", "-c", cpus, *base, *extra], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=log), []


def cpu_s(procs: list[psutil.Process], which: slice = slice(0, 2)) -> float:
    """CPU seconds (user + system by default; slice(1, 2): system only) of live processes."""
    total = 0.0
    for p in procs:
        try:
            total += sum(p.cpu_times()[which])
        except psutil.NoSuchProcess:
            pass
    return total


def streams_mean(sessions: list[dict], window: tuple[float, float]) -> float:
    """Time-average of sessions streaming (first frame sent to end) over the window."""
    a, b = window
    busy = 0.0
    for s in sessions:
        start = s["started_at"] + ((s["connect_ms"] or 0.0) + (s["ready_ms"] or 0.0)) / 1000.0
        busy += max(0.0, min(s["ended_at"], b) - max(start, a))
    return busy / (b - a)


def per_second_p99(lag: np.ndarray, t0: float) -> list[float]:
    second = (lag["t"] - t0).astype(int)
    return [round(float(np.percentile(lag["lag_ms"][second == s], 99)), 1) if (second == s).any() else 0.0
            for s in range(max(int(second.max()) + 1, 0) if second.size else 0)]


def read_meta_safe(run_dir: Path) -> dict:
    try:
        return read_meta(run_dir)
    except ValueError:  # caught mid-write
        return {}


def measure(args: argparse.Namespace, servers: list[ServerProcess], gen_cores: list[int], workdir: Path) -> Point:
    name = f"{args.mode}-w{args.workers}-u{args.users}"
    run_dir = workdir / name
    log = open(workdir / f"{name}.log", "wb")
    hosts = ",".join(s.url for s in servers)
    for s in servers:
        s.event_log.write_bytes(b"")  # counts start from this point
    master, workers = start_generator(args, hosts, run_dir, gen_cores, log)
    window = (float("inf"), float("inf"))  # known once the master has written the test's start into run.json
    m = psutil.Process(master.pid)
    srv = [psutil.Process(s.process.pid) for s in servers]
    rss = 0.0
    marks: dict[str, tuple[float, float, float]] = {}
    while master.poll() is None:
        now = time.time()
        if window[0] == float("inf") and read_meta_safe(run_dir).get("started_at"):
            ramp_end = read_meta_safe(run_dir)["started_at"] + args.ramp_s
            window = (ramp_end + args.settle, ramp_end + args.settle + args.window)
        gen = [m, *m.children(recursive=True), *(psutil.Process(w.pid) for w in workers if w.poll() is None)]
        sample = (cpu_s([m]), cpu_s(gen), cpu_s(gen, slice(1, 2)), cpu_s(srv))
        if window[0] <= now and "start" not in marks:
            marks["start"] = (now, *sample)
        if window[0] <= now <= window[1]:
            marks["end"] = (now, *sample)
            rss = max(rss, m.memory_info().rss)
        time.sleep(0.5)
    for w in workers:
        try:
            w.wait(timeout=60)
        except subprocess.TimeoutExpired:
            w.kill()
    time.sleep(1.0)  # the servers flush their event logs every 0.2 s
    if "end" not in marks:
        log.close()
        tail = (workdir / f"{name}.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"{name}: the generator ended before the measurement window (exit {master.returncode}):\n"
                         f"{tail}")
    (ta, *a), (tb, *b) = marks["start"], marks["end"]
    master_cpu, gen_cpu, gen_sys, server_cpu = ((y - x) / (tb - ta) for x, y in zip(a, b))
    lag = read_send_lag(run_dir)
    sessions = read_session_records(run_dir)
    outcomes = Counter(s["outcome"] for s in sessions)
    in_ramp = lag["t"] < window[0]
    steady = (lag["t"] >= window[0]) & (lag["t"] <= window[1])
    window_sessions = [s for s in sessions if window[0] <= s["ended_at"] <= window[1]]
    backlog = [s["backlog_max_ms"] for s in window_sessions if s.get("backlog_max_ms") is not None]
    seen, words_sent, words_after_marker = server_counts(servers)

    def p99(x: np.ndarray) -> float:
        return round(float(np.percentile(x, 99)), 2) if x.size else float("nan")

    return Point(args.mode, len(servers), args.workers, args.users, args.spawn_rate * max(args.workers, 1),
                 round(streams_mean(sessions, window), 1), p99(lag["lag_ms"]), p99(lag["lag_ms"][in_ramp]),
                 p99(lag["lag_ms"][steady]), round(float(lag["lag_ms"][steady].max()), 2) if steady.any() else 0.0,
                 round(float(np.mean(lag["lag_ms"] > LAG_LIMIT_MS)), 5),
                 round(float(np.percentile(backlog, 99)), 1) if backlog else float("nan"),
                 len(sessions), outcomes["ok"], outcomes["cancelled"], seen, sum(s["words"] for s in sessions),
                 words_sent, words_after_marker,
                 round(master_cpu, 3), round(rss / 1e6, 1), round(gen_cpu, 2), round(gen_sys, 2), round(server_cpu, 2),
                 len(read_meta(run_dir).get("workers_lost", [])), per_second_p99(lag, read_meta(run_dir)["started_at"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=8, help="reference servers, pinned to cores 0..K-1")
    parser.add_argument("--workers", default="7", help="worker processes per point, comma-separated (0: one process)")
    parser.add_argument("--users", default="10500", help="users per point, comma-separated (paired with --workers)")
    parser.add_argument("--mode", default="master-worker",
                        help="processes or master-worker, per point (comma-separated) or one for all")
    parser.add_argument("--spawn-rate", type=float, default=100.0, help="users/s per worker process")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after the ramp before the window")
    parser.add_argument("--window", type=float, default=30.0, help="steady seconds measured")
    parser.add_argument("--think-time", type=float, default=0.25)
    parser.add_argument("--samples", default=DEFAULT_SAMPLES)
    parser.add_argument("--step-ms", type=float, default=10.0, help="the synthetic engine's simulated step time")
    parser.add_argument("--json", type=Path, help="append the points here (JSON lines)")
    args = parser.parse_args()

    cores = sorted(os.sched_getaffinity(0))
    if len(cores) <= args.servers:
        sys.exit(f"{len(cores)} cores: leave at least one for the generator (--servers < {len(cores)})")
    users = [int(u) for u in args.users.split(",")]
    workers = [int(w) for w in args.workers.split(",")]
    modes = args.mode.split(",")
    workers = workers * len(users) if len(workers) == 1 else workers
    modes = modes * len(users) if len(modes) == 1 else modes
    if not len(users) == len(workers) == len(modes) or not set(modes) <= {"processes", "master-worker"}:
        sys.exit("--users, --workers, --mode: one value each per point, or one --workers/--mode for all")
    servers = []
    try:
        for core in cores[: args.servers]:
            server = start_server(engine="synthetic", batch_size=4096, step_ms=args.step_ms, event_log=True,
                                  silent=True, timeout=60)
            pin(server.process.pid, core)
            servers.append(server)
        gen_cores = cores[args.servers:]
        workdir = Path(tempfile.mkdtemp(prefix="yapbench-scaleout-"))
        print(f"{len(cores)} cores: {len(servers)} servers on {cores[:args.servers]}, generator on {gen_cores}; "
              f"runs in {workdir}", flush=True)
        for w, u, mode in zip(workers, users, modes):
            args.workers, args.users, args.mode = w, u, mode
            args.ramp_s = u / (args.spawn_rate * max(w, 1))
            point = measure(args, servers, gen_cores, workdir)
            print(json.dumps(asdict(point) | {"accounted": point.accounted, "held": point.held}), flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(asdict(point) | {"accounted": point.accounted, "held": point.held}) + "\n")
            dead = [s.url for s in servers if not s.alive()]
            if dead:
                sys.exit(f"servers died: {dead}")
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    main()
