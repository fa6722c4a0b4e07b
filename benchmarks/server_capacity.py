"""How many real-time streams the reference server's synthetic engine holds on one core.

For each N, starts `yapbench serve --engine synthetic --batch-size N` pinned to one core (taskset), opens N
WebSocket streams from a minimal asyncio raw-socket client pinned to another core (pre-built masked frames, one
write per frame, no per-message coroutine), sends 1920-sample frames at real time with staggered phases for
DURATION seconds, and counts Step messages per stream.

A stream keeps its cadence when it receives ~12.5 Steps/s and its backlog (frames sent - Steps received) stays
flat. Reported per N: median and 5th percentile of Steps/s per stream, the backlog's growth over the measured
window (frames), server CPU (one core = 100 %), the client's own send lag (its health: a late client measures
itself, not the server), and the server's median step time.

    .venv/bin/python benchmarks/server_capacity.py --streams 250,500,1000,1500 --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import os
import statistics
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from yapbench.audio import load_clip  # noqa: E402
from yapbench.protocol import FRAME_SECONDS, encode_audio  # noqa: E402
from yapbench.server.launch import start_server  # noqa: E402
from yapbench.wsframe import FrameReader, client_frame  # noqa: E402

STEP_PREFIX = b"\x84\xa4type\xa4Step"
WARMUP_S = 3.0  # connect + settle before the measured window


@dataclass
class Stream(asyncio.Protocol):
    index: int
    frames: list[bytes]
    connected: asyncio.Future[None]
    transport: asyncio.Transport | None = None
    reader: FrameReader = field(default_factory=lambda: FrameReader(expect_masked=False))
    handshake: bytes = b""
    upgraded: bool = False
    ready: bool = False
    sent: int = 0
    steps: int = 0
    closed: bool = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"GET /api/asr-streaming HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                        b"kyutai-api-key: public_token\r\n\r\n")

    def data_received(self, data: bytes) -> None:
        if not self.upgraded:
            self.handshake += data
            if b"\r\n\r\n" not in self.handshake:
                return
            head, data = self.handshake.split(b"\r\n\r\n", 1)
            self.upgraded = head.startswith(b"HTTP/1.1 101")
        for frame in self.reader.feed(data):
            if frame.payload.startswith(STEP_PREFIX):
                self.steps += 1
            elif not self.ready:
                self.ready = True
                if not self.connected.done():
                    self.connected.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.connected.done():
            self.connected.set_exception(ConnectionError(f"stream {self.index} closed before Ready"))

    def send_next(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(self.frames[self.sent % len(self.frames)])
            self.sent += 1


def prebuilt_frames() -> list[bytes]:
    clip = load_clip(ROOT / "samples" / "mid.wav")
    return [client_frame(encode_audio(f), mask_key=b"\x11\x22\x33\x44") for f in clip.frames()]


async def drive(port: int, n: int, duration: float, frames: list[bytes]) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    streams = [Stream(i, frames, loop.create_future()) for i in range(n)]
    for s in streams:  # connect in small bursts: the listen backlog is finite
        await loop.create_connection(lambda s=s: s, "127.0.0.1", port)
    await asyncio.wait_for(asyncio.gather(*(s.connected for s in streams)), 30)
    start = time.monotonic() + 0.1
    # One pacing loop for all streams: stream i's k-th frame is due at start + i/n * 80 ms + k * 80 ms.
    due = [(start + i / n * FRAME_SECONDS, i) for i in range(n)]
    heapq.heapify(due)
    lags: list[float] = []
    end = start + WARMUP_S + duration
    marks: dict[str, tuple[float, list[int], list[int]]] = {}
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if "a" not in marks and now >= start + WARMUP_S:
            marks["a"] = (now, [s.sent for s in streams], [s.steps for s in streams])
        while due and due[0][0] <= now:
            t, i = heapq.heappop(due)
            streams[i].send_next()
            if now > start + WARMUP_S:
                lags.append(now - t)
            heapq.heappush(due, (t + FRAME_SECONDS, i))
        await asyncio.sleep(max(0.0, min(due[0][0] - time.monotonic(), 0.005)))
    t1 = time.monotonic()
    t0, sent0, steps0 = marks["a"]
    window = t1 - t0
    rates = [(s.steps - steps0[i]) / window for i, s in enumerate(streams)]
    growth = [(s.sent - s.steps) - (sent0[i] - steps0[i]) for i, s in enumerate(streams)]
    for s in streams:
        if s.transport is not None:
            s.transport.abort()
    lags.sort()
    return {
        "steps_per_s_median": statistics.median(rates),
        "steps_per_s_p5": float(np.percentile(rates, 5)),
        "backlog_growth_frames_median": statistics.median(growth),
        "backlog_growth_frames_max": max(growth),
        "closed_streams": sum(s.closed for s in streams),
        "client_send_lag_ms_p50": 1000 * lags[len(lags) // 2] if lags else 0.0,
        "client_send_lag_ms_p99": 1000 * lags[int(len(lags) * 0.99)] if lags else 0.0,
        "window_s": window,
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def step_median_ms(http_url: str) -> float:
    """Median step time from /metrics' histogram (bucket resolution: 10 ms, below 20 ms shows as '<20')."""
    text = urllib.request.urlopen(http_url + "/metrics", timeout=5).read().decode()
    buckets = [(line.split('le="')[1].split('"')[0], float(line.rsplit(" ", 1)[1]))
               for line in text.splitlines() if line.startswith("asr_model_step_duration_bucket")]
    total = buckets[-1][1]
    for le, count in buckets:
        if count >= total / 2:
            return float("inf") if le == "+Inf" else float(le) * 1000
    return float("nan")


def run_one(n: int, duration: float, step_ms: float, server_cpu: int, frames: list[bytes]) -> dict[str, float]:
    with start_server(engine="synthetic", batch_size=n, step_ms=step_ms, log_level="warning",
                      timeout=60) as server:
        os.sched_setaffinity(server.process.pid, {server_cpu})
        cpu0, t0 = cpu_seconds(server.process.pid), time.monotonic()
        result = asyncio.run(drive(server.port, n, duration, frames))
        result["server_cpu_pct"] = 100 * (cpu_seconds(server.process.pid) - cpu0) / (time.monotonic() - t0)
        result["step_ms_median_bucket"] = step_median_ms(server.http_url)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="250,500,1000,1500", help="comma-separated stream counts")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds per step")
    parser.add_argument("--step-ms", type=float, default=20.0, help="simulated GPU step cost")
    parser.add_argument("--server-cpu", type=int, default=0, help="core the server is pinned to")
    parser.add_argument("--client-cpu", type=int, default=1, help="core the client is pinned to")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.client_cpu})
    frames = prebuilt_frames()
    print(json.dumps({"nproc": os.cpu_count(), "argv": sys.argv[1:]}))
    for n in (int(x) for x in args.streams.split(",")):
        result = run_one(n, args.duration, args.step_ms, args.server_cpu, frames)
        print(json.dumps({"streams": n, **{k: round(v, 2) for k, v in result.items()}}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
