"""`yapbench client FILE`: stream one file, print words as they arrive and a latency summary (the seed's client.py)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from ..options import add_session_options

DEFAULT_RESULTS = "reports/client_metrics.jsonl"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="speech file (wav, flac, mp3, ogg; any rate and channel count)")
    parser.add_argument("--server", default=None, help="HOST:PORT or ws:// URL (default $YAP_ADDR:$YAP_PORT or 127.0.0.1:8000)")
    parser.add_argument("--rtf", dest="speed_alias", type=float, default=None, help="alias of --speed (the seed's name)")
    parser.add_argument("--results", default=DEFAULT_RESULTS, help=f"append the session as a JSON line here ({DEFAULT_RESULTS})")
    add_session_options(parser)


def main(args: argparse.Namespace) -> int:
    from gevent import monkey

    monkey.patch_all()
    from ..corpus import build_corpus
    from ..options import check_reachable, server_url, session_config
    from ..samples import Sample
    from ..session import run_session, worker_name
    from ..summary_text import session_summary_lines
    from .. import protocol as P

    if args.speed_alias is not None:
        args.speed = args.speed_alias
    url = server_url(args.server)
    cfg = session_config(args, url, worker=worker_name())
    path = Path(args.file)
    corpus = build_corpus([Sample(path.name, path, "")], args.silence_prefix)
    clip = corpus.clips[0]
    check_reachable(url, args.connect_timeout)  # after the file: local mistakes first
    print(f"streaming {path} ({clip.audio_s:.2f} s) to {url} at {cfg.speed:g}x", file=sys.stderr)

    def show(_stream, msg, _t) -> None:
        if isinstance(msg, P.Word):
            print(msg.text, end=" ", flush=True)

    result = run_session(cfg, clip, listener=show)
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
