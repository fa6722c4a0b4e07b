"""The baseline load client, written the way the seed's test/bench.py is: asyncio + `websockets`, one task per
stream, each frame packed when it is sent (`msgpack.packb(pcm.tolist())`), `asyncio.sleep` pacing per stream.

benchmarks/loadgen.py runs it beside yapbench's Locust user against the same server, so the ratio between the two
is measured under the same criterion. It writes the parts of a run directory the benchmark reads
(sessions.jsonl with frames_planned/frames_sent/outcome, send_lag.bin in yapbench.runlog's format), so both clients
are judged by the same code.

    python benchmarks/seed_style_client.py --url ws://127.0.0.1:PORT --streams 200 --ramp 10 --run-time 45 \
        --run-dir /tmp/seed-200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from pathlib import Path

import msgpack
import numpy as np
import websockets

from yapbench.audio import load_clip
from yapbench.protocol import API_KEY_HEADER, DEFAULT_PATH, FRAME_SAMPLES, FRAME_SECONDS
from yapbench.runlog import SEND_LAG, SEND_LAG_DTYPE, SESSIONS
from yapbench.samples import load_manifest, select

FLUSH_FRAMES = 40  # the same flush recipe as yapbench (docs/protocol.md §3): Marker, then a burst of silence
FLUSH_TIMEOUT_S = 15.0


class Run:
    """What every stream of the run shares: clips, the stop time, and the records."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.url = args.url.rstrip("/") + DEFAULT_PATH
        self.key = args.api_key
        self.speed = args.speed
        self.clips = [(s.name, load_clip(s.path).frames()) for s in select(load_manifest(), args.samples)]
        self.stop_at = time.perf_counter() + args.run_time
        self.lags: list[tuple[float, float]] = []  # (epoch of the send, lag ms)
        self.sessions: list[dict] = []
        self.marker_ids = iter(range(1, 1 << 30))


async def stream_once(run: Run, rng: random.Random) -> None:
    name, frames = rng.choice(run.clips)
    marker_id = next(run.marker_ids)
    record = {"sample": name, "frames_planned": len(frames), "frames_sent": 0, "words": 0, "outcome": "ok",
              "started_at": time.time()}
    try:
        async with websockets.connect(run.url, additional_headers={API_KEY_HEADER: run.key}, max_size=None,
                                      compression=None, ping_interval=None) as ws:
            first = msgpack.unpackb(await ws.recv())
            if first.get("type") != "Ready":
                record["outcome"] = "rejected"
                return
            marker_seen = asyncio.Event()

            async def receive() -> None:
                async for raw in ws:
                    msg = msgpack.unpackb(raw)
                    if msg["type"] == "Word":
                        record["words"] += 1
                    elif msg["type"] == "Marker" and msg["id"] == marker_id:
                        marker_seen.set()
                        return

            receiver = asyncio.create_task(receive())
            t0 = time.perf_counter()
            for i, pcm in enumerate(frames):
                deadline = t0 + i * FRAME_SECONDS / run.speed
                delay = deadline - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                await ws.send(msgpack.packb({"type": "Audio", "pcm": pcm.tolist()}, use_single_float=True))
                now = time.perf_counter()
                run.lags.append((time.time(), (now - deadline) * 1000.0))
                record["frames_sent"] += 1
            await ws.send(msgpack.packb({"type": "Marker", "id": marker_id}))
            silence = np.zeros(FRAME_SAMPLES, dtype=np.float32)
            for _ in range(FLUSH_FRAMES):
                await ws.send(msgpack.packb({"type": "Audio", "pcm": silence.tolist()}, use_single_float=True))
            try:
                await asyncio.wait_for(marker_seen.wait(), FLUSH_TIMEOUT_S)
            except asyncio.TimeoutError:
                record["outcome"] = "flush_timeout"
            receiver.cancel()
    except (OSError, websockets.WebSocketException) as exc:
        record["outcome"] = "disconnected"
        record["error"] = repr(exc)
    finally:
        record["ended_at"] = time.time()
        run.sessions.append(record)


async def user(run: Run, start_delay: float, seed: int) -> None:
    """Back-to-back sessions until the run time is over; the session in flight then finishes."""
    rng = random.Random(seed)
    await asyncio.sleep(start_delay)
    while time.perf_counter() < run.stop_at:
        await stream_once(run, rng)


async def main_async(args: argparse.Namespace) -> Run:
    run = Run(args)
    rate = args.streams / args.ramp if args.ramp > 0 else float("inf")
    await asyncio.gather(*(user(run, i / rate, i) for i in range(args.streams)))
    return run


def write_run_dir(run: Run, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    lag = np.array(run.lags, dtype=[("t", "<f8"), ("lag_ms", "<f8")]).astype(SEND_LAG_DTYPE)
    (run_dir / SEND_LAG).write_bytes(lag.tobytes())
    (run_dir / SESSIONS).write_text("".join(json.dumps(s) + "\n" for s in run.sessions))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="ws://HOST:PORT of the server")
    parser.add_argument("--api-key", default="public_token")
    parser.add_argument("--streams", type=int, required=True)
    parser.add_argument("--ramp", type=float, default=10.0, help="seconds over which the streams start")
    parser.add_argument("--run-time", type=float, required=True, help="seconds after which no session starts")
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--samples", default="mid.wav,real/en_*")
    parser.add_argument("--run-dir", type=Path, required=True)
    args = parser.parse_args()
    write_run_dir(asyncio.run(main_async(args)), args.run_dir)


if __name__ == "__main__":
    main()
