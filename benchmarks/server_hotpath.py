"""The reference server's Python cost per 80 ms frame, phase by phase, without sockets (in one process).

Builds a real `Server` (synthetic engine), upgrades N connections through its HTTP parser with a transport that
only counts writes, then for each round feeds every connection one masked Audio frame of samples/mid.wav through
`data_received` and runs one model-loop iteration (pre-process, engine step, post-process). Reports CPU time
(process time, so a busy machine inflates it less than wall time) per frame for each phase, the best of
--trials. What it leaves out: the event loop and the kernel's socket work, which benchmarks/server_capacity.py
measures end to end.

    PYTHONPATH=$PWD python3 benchmarks/server_hotpath.py --streams 1000 --rounds 60 --trials 5 [--event-log]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from yapbench.audio import load_clip  # noqa: E402
from yapbench.protocol import encode_audio  # noqa: E402
from yapbench.server.app import Server  # noqa: E402
from yapbench.server.config import load_config, with_overrides  # noqa: E402
from yapbench.server.connection import Connection  # noqa: E402
from yapbench.wsframe import client_frame  # noqa: E402

UPGRADE = (b"GET /api/asr-streaming HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
           b"kyutai-api-key: public_token\r\n\r\n")
WARMUP_ROUNDS = 5


class CountingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.writes += 1

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default

    def close(self) -> None:
        pass


def trial(n: int, rounds: int, event_log: str | None) -> dict[str, float]:
    config = with_overrides(load_config(None), batch_size=n, step_ms=0, log_level="warning", event_log=event_log)
    server = Server(config)
    model = server.model
    frames = [client_frame(encode_audio(f)) for f in load_clip(ROOT / "samples" / "mid.wav").frames()]
    conns = []
    for _ in range(n):
        conn = Connection(server)
        conn.connection_made(CountingTransport())
        conn.data_received(UPGRADE)
        conns.append(conn)
    model._pre_process()  # Init -> Ready
    clock = time.process_time
    spent = {"receive": 0.0, "pre_process": 0.0, "engine": 0.0, "post_process": 0.0}
    for r in range(rounds):
        t0 = clock()
        frame = frames[r % len(frames)]
        for conn in conns:
            conn.data_received(frame)
        t1 = clock()
        active = model._pre_process()
        t2 = clock()
        out = model.engine.step(model._batch, model._mask)
        t3 = clock()
        model.step_idx += 1
        model.model_step_idx += 1
        rows = [s.index for s in active]
        model._post_process(out.tokens, out.prs, active, rows)
        model._mask[rows] = False
        t4 = clock()
        if r >= WARMUP_ROUNDS:
            for key, dt in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                spent[key] += dt
    if server.events:
        server.events.close()
    counted = n * (rounds - WARMUP_ROUNDS)
    per_frame = {f"{k}_us": 1e6 * v / counted for k, v in spent.items()}
    per_frame["total_us"] = sum(per_frame.values())
    return per_frame


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--trials", type=int, default=5, help="report the trial with the lowest total")
    parser.add_argument("--event-log", action="store_true", help="with the server's event log on (a temp file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "events.jsonl") if args.event_log else None
        best = min((trial(args.streams, args.rounds, log) for _ in range(args.trials)), key=lambda r: r["total_us"])
    print(json.dumps({"streams": args.streams, "event_log": args.event_log, "python": sys.version.split()[0],
                      **{k: round(v, 2) for k, v in best.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
