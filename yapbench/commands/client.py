"""`yapbench client FILE`: stream one file, print words as they arrive and a latency summary (the seed's client.py)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from .single import add_single_stream_options, prepare

DEFAULT_RESULTS = "reports/client_metrics.jsonl"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="speech file (wav, flac, mp3, ogg; any rate and channel count)")
    parser.add_argument("--results", default=DEFAULT_RESULTS,
                        help=f"append the session as a JSON line here ({DEFAULT_RESULTS})")
    add_single_stream_options(parser)


def main(args: argparse.Namespace) -> int:
    one = prepare(args, args.file)
    from .. import protocol as P
    from ..session import run_session
    from ..summary_text import session_summary_lines

    print(f"streaming {args.file} ({one.clip.audio_s:.2f} s) to {one.url} at {one.cfg.speed:g}x", file=sys.stderr)

    def show(_stream, msg, _t) -> None:
        if isinstance(msg, P.Word):
            print(msg.text, end=" ", flush=True)

    result = run_session(one.cfg, one.clip, listener=show)
    print()
    for line in session_summary_lines(result):
        print(line)
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = result.record() | {"words_detail": [dataclasses.asdict(w) for w in result.words]}
    with open(out, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    print(f"session written to {out}", file=sys.stderr)
    return 0 if result.outcome == "ok" else 1
