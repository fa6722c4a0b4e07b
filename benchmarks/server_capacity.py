"""How many real-time streams the reference server's synthetic engine holds on one core.

For each N, starts `yapbench serve --engine synthetic --batch-size N` pinned to one core, opens N WebSocket
streams from raw-socket asyncio clients (one process per client core: pre-built masked frames, one write per frame,
Steps counted from the bytes without decoding them), sends 1920-sample frames at real time with phases staggered
evenly over the 80 ms period, and counts Step messages per stream over a measured window.

A stream keeps its cadence when it receives ~12.5 Steps/s and its backlog (frames sent - Steps received) stays
flat. A point is *held* when the median stream gets >= 12.3 Steps/s, 95 % of the streams' backlogs grew by at most
2 frames over the window and no stream was closed; it is *client-limited* (no verdict on the server) when the
clients' own send lag p99 exceeds 20 ms. Reported per N: Steps/s per stream (median, 5th percentile), backlog
growth, server CPU (one core = 100 %) and its CPU time per stepped frame, the clients' send lag, the server's
median step time.

One point or a list:
    PYTHONPATH=$PWD python3 benchmarks/server_capacity.py --streams 500,1000,1500 --duration 15
The per-core figure (streams held with the cadence intact, event log off and on; stops each search at the first
point not held):
    PYTHONPATH=$PWD python3 benchmarks/server_capacity.py --per-core
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import shutil
import statistics
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from yapbench.audio import load_clip  # noqa: E402
from yapbench.protocol import FRAME_SECONDS, STEP_PREFIX, encode_audio  # noqa: E402
from yapbench.server.launch import start_server  # noqa: E402
from yapbench.wsframe import client_frame  # noqa: E402

READY_MARK = b"\xa5Ready"
WARMUP_S = 3.0  # after the first frames, before the measured window
HELD_STEPS_PER_S = 12.3
HELD_BACKLOG_GROWTH = 2  # frames, 95th percentile of the streams
CLIENT_LAG_LIMIT_MS = 20.0
PER_CORE_STREAMS = "1000,1500,2000,2500,3000,3500,4000,5000,6000"
UPGRADE = (b"GET /api/asr-streaming HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
           b"kyutai-api-key: public_token\r\n\r\n")


@dataclass(eq=False)
class Stream(asyncio.Protocol):
    frames: list[bytes]
    connected: asyncio.Future[None]
    transport: Any = None
    handshake: bytes = b""
    upgraded: bool = False
    tail: bytes = b""  # the end of the last read, in case a Step's first bytes were split across two reads
    ready: bool = False
    sent: int = 0
    steps: int = 0
    closed: bool = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.write(UPGRADE)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            self.handshake += data
            if b"\r\n\r\n" not in self.handshake:
                return
            head, data = self.handshake.split(b"\r\n\r\n", 1)
            self.upgraded = head.startswith(b"HTTP/1.1 101")
        chunk = self.tail + data
        self.steps += chunk.count(STEP_PREFIX)
        self.tail = chunk[-(len(STEP_PREFIX) - 1) :]
        if not self.ready and READY_MARK in chunk:
            self.ready = True
            if not self.connected.done():
                self.connected.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.connected.done():
            self.connected.set_exception(ConnectionError("stream closed before Ready"))


@dataclass
class ClientPart:
    """One client process's share: its streams' phases (fractions of the 80 ms period)."""

    port: int
    phases: list[float]
    cpu: int
    nice: int
    frames: list[bytes] = field(repr=False)


def prebuilt_frames() -> list[bytes]:
    clip = load_clip(ROOT / "samples" / "mid.wav")
    return [client_frame(encode_audio(f), mask_key=b"\x11\x22\x33\x44") for f in clip.frames()]


async def _client(part: ClientPart, pipe: Connection) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    streams = [Stream(part.frames, loop.create_future()) for _ in part.phases]
    for s in streams:  # one at a time: the listen backlog is finite
        await loop.create_connection(lambda s=s: s, "127.0.0.1", part.port)
    await asyncio.wait_for(asyncio.gather(*(s.connected for s in streams)), 60)
    pipe.send("ready")
    start, window_start, end = await loop.run_in_executor(None, pipe.recv)
    # Streams sorted by phase; round r of stream k is due at start + (phase_k + r) * 80 ms.
    order = sorted(range(len(streams)), key=lambda k: part.phases[k])
    offsets = [part.phases[k] * FRAME_SECONDS for k in order]
    sends = [streams[k] for k in order]
    n_frames = len(part.frames)
    lags: list[float] = []
    pos, base = 0, start
    marks: tuple[list[int], list[int]] | None = None
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if marks is None and now >= window_start:
            marks = ([s.sent for s in streams], [s.steps for s in streams])
        while base + offsets[pos] <= now:
            s = sends[pos]
            if not s.closed:
                s.transport.write(s.frames[s.sent % n_frames])
                s.sent += 1
            if marks is not None:
                lags.append(now - base - offsets[pos])
            pos += 1
            if pos == len(sends):
                pos, base = 0, base + FRAME_SECONDS
        await asyncio.sleep(min(max(0.0, base + offsets[pos] - time.monotonic()), 0.005))
    assert marks is not None
    window = time.monotonic() - window_start
    sent0, steps0 = marks
    result = {
        "rates": [(s.steps - steps0[i]) / window for i, s in enumerate(streams)],
        "growth": [(s.sent - s.steps) - (sent0[i] - steps0[i]) for i, s in enumerate(streams)],
        "steps": sum(s.steps - steps0[i] for i, s in enumerate(streams)),
        "closed": sum(s.closed for s in streams),
        "lag_p50": float(np.percentile(lags, 50)) if lags else 0.0,
        "lag_p99": float(np.percentile(lags, 99)) if lags else 0.0,
    }
    for s in streams:
        if s.transport is not None:
            s.transport.abort()
    return result


def prioritise(pid: int, nice: int) -> None:
    """Niceness for a process, and for its autogroup where the kernel groups sessions (Linux autogroups share the
    CPU between sessions fairly whatever the niceness inside them; the server and each client are sessions)."""
    os.setpriority(os.PRIO_PROCESS, pid, nice)
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
    except OSError:
        pass  # no autogroups: niceness alone decides


def _client_main(part: ClientPart, pipe: Connection) -> None:
    os.sched_setaffinity(0, {part.cpu})
    if part.nice:
        os.setsid()
        prioritise(os.getpid(), part.nice)
    try:
        import uvloop

        result = uvloop.run(_client(part, pipe))
    except ImportError:
        result = asyncio.run(_client(part, pipe))
    pipe.send(result)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def step_median_ms(http_url: str) -> float:
    """Median step time from /metrics' histogram (bucket upper bound: 20, 30, ... 80 ms, then inf)."""
    text = urllib.request.urlopen(http_url + "/metrics", timeout=5).read().decode()
    buckets = [(line.split('le="')[1].split('"')[0], float(line.rsplit(" ", 1)[1]))
               for line in text.splitlines() if line.startswith("asr_model_step_duration_bucket")]
    total = buckets[-1][1]
    for le, count in buckets:
        if count >= total / 2:
            return float("inf") if le == "+Inf" else float(le) * 1000
    return float("nan")


def run_one(n: int, args: argparse.Namespace, event_log: bool, frames: list[bytes]) -> dict[str, Any]:
    ctx = multiprocessing.get_context("fork")
    cpus = args.client_cpus
    k = min(len(cpus), n)
    with start_server(engine="synthetic", batch_size=n, step_ms=args.step_ms, log_level="warning",
                      event_log=event_log, timeout=60) as server:
        try:
            os.sched_setaffinity(server.process.pid, {args.server_cpu})
            if args.nice:
                prioritise(server.process.pid, args.nice)
            pipes, procs = [], []
            for j in range(k):
                part = ClientPart(server.port, [i / n for i in range(j, n, k)], cpus[j], args.nice, frames)
                mine, theirs = ctx.Pipe()
                proc = ctx.Process(target=_client_main, args=(part, theirs), daemon=True)
                proc.start()
                pipes.append(mine)
                procs.append(proc)
            for pipe in pipes:
                if not pipe.poll(120) or pipe.recv() != "ready":
                    raise RuntimeError(f"{n} streams: a client process did not connect its streams")
            start = time.monotonic() + 0.3
            window_start, end = start + WARMUP_S, start + WARMUP_S + args.duration
            for pipe in pipes:
                pipe.send((start, window_start, end))
            time.sleep(max(0.0, window_start - time.monotonic()))
            cpu0, t0 = cpu_seconds(server.process.pid), time.monotonic()
            time.sleep(max(0.0, end - time.monotonic()))
            cpu1, t1 = cpu_seconds(server.process.pid), time.monotonic()
            parts = [pipe.recv() if pipe.poll(60) else None for pipe in pipes]
            for proc in procs:
                proc.join(10)
            if any(p is None for p in parts):
                raise RuntimeError(f"{n} streams: a client process gave no result")
            step_ms = step_median_ms(server.http_url)
        finally:
            server.stop()
            shutil.rmtree(server.workdir, ignore_errors=True)  # the event log grows ~70 bytes per message
    rates = [r for p in parts for r in p["rates"]]
    growth = [g for p in parts for g in p["growth"]]
    steps = sum(p["steps"] for p in parts)
    result: dict[str, Any] = {
        "streams": n,
        "event_log": event_log,
        "steps_per_s_median": statistics.median(rates),
        "steps_per_s_p5": float(np.percentile(rates, 5)),
        "backlog_growth_frames_median": statistics.median(growth),
        "backlog_growth_frames_p95": float(np.percentile(growth, 95)),
        "closed_streams": sum(p["closed"] for p in parts),
        "client_processes": k,
        "client_send_lag_ms_p50": 1000 * max(p["lag_p50"] for p in parts),
        "client_send_lag_ms_p99": 1000 * max(p["lag_p99"] for p in parts),
        "server_cpu_pct": 100 * (sum(cpu1) - sum(cpu0)) / (t1 - t0),
        "server_cpu_us_per_frame": 1e6 * (sum(cpu1) - sum(cpu0)) / steps if steps else math.inf,
        "server_sys_share": (cpu1[1] - cpu0[1]) / max(1e-9, sum(cpu1) - sum(cpu0)),
        "step_ms_median_bucket": step_ms,
    }
    result["verdict"] = verdict(result)
    return result


def verdict(r: dict[str, Any]) -> str:
    if r["client_send_lag_ms_p99"] > CLIENT_LAG_LIMIT_MS:
        return "client-limited"
    held = (r["steps_per_s_median"] >= HELD_STEPS_PER_S and r["backlog_growth_frames_p95"] <= HELD_BACKLOG_GROWTH
            and r["closed_streams"] == 0)
    return "held" if held else "behind"


def _rounded(r: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", help=f"comma-separated stream counts (--per-core default: {PER_CORE_STREAMS})")
    parser.add_argument("--per-core", action="store_true",
                        help="search: the largest count held, for each --event-log setting, stopping at the first "
                             "count not held")
    parser.add_argument("--event-log", default=None,
                        help="off, on or off,on: run the server with --event-log (default: off; --per-core: off,on)")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per point")
    parser.add_argument("--step-ms", type=float, default=20.0, help="simulated GPU step cost")
    parser.add_argument("--server-cpu", type=int, default=0, help="core the server is pinned to")
    parser.add_argument("--client-cpus", default="auto",
                        help="cores for the client processes, one each (auto: the next up to 4 cores after the "
                             "server's)")
    parser.add_argument("--nice", type=int, default=0,
                        help="niceness of the server and clients, and of their autogroups (negative needs root; on a "
                             "shared machine it keeps the neighbours from deciding the result)")
    args = parser.parse_args()
    ncpu = os.cpu_count() or 1
    if args.client_cpus == "auto":
        others = [c for c in sorted(os.sched_getaffinity(0)) if c != args.server_cpu]
        args.client_cpus = others[:4] or [args.server_cpu]
    else:
        args.client_cpus = [int(c) for c in args.client_cpus.split(",")]
    counts = [int(x) for x in (args.streams or (PER_CORE_STREAMS if args.per_core else "250,500,1000")).split(",")]
    modes = (args.event_log or ("off,on" if args.per_core else "off")).split(",")
    if any(m not in ("off", "on") for m in modes):
        parser.error("--event-log takes off, on or off,on")
    frames = prebuilt_frames()
    try:
        import uvloop  # noqa: F401

        loop_name = "uvloop"
    except ImportError:
        loop_name = "asyncio"
    print(json.dumps({"nproc": ncpu, "python": sys.version.split()[0], "client_loop": loop_name,
                      "server_cpu": args.server_cpu, "client_cpus": args.client_cpus, "argv": sys.argv[1:]}),
          flush=True)
    summary: dict[str, Any] = {}
    for mode in modes:
        held: dict[str, Any] = {}
        stopped_by = "end of list"
        for n in counts:
            result = run_one(n, args, mode == "on", frames)
            print(json.dumps(_rounded(result)), flush=True)
            if result["verdict"] == "held":
                held = result if n >= held.get("streams", 0) else held
            elif args.per_core:
                stopped_by = f"{n}: {result['verdict']}"
                break
        summary[f"event_log_{mode}"] = {
            "streams_per_core_held": held.get("streams", 0), "search_stopped_at": stopped_by,
            **{f"held_{k}": round(held[k], 2) for k in ("server_cpu_pct", "server_cpu_us_per_frame") if held}}
    if args.per_core:
        print(json.dumps({"summary": summary, "step_ms": args.step_ms}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
