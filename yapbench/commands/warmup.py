"""`yapbench warmup`: a health check — stream a short sample fast, print OK with latencies or FAIL with the reason."""

from __future__ import annotations

import argparse

from ..options import add_session_options
from ..samples import DEFAULT_MANIFEST

DEFAULT_SAMPLE = DEFAULT_MANIFEST.parent / "real" / "en_ljspeech_LJ002-0020.wav"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=None, help="HOST:PORT or ws:// URL (default $YAP_ADDR:$YAP_PORT or 127.0.0.1:8000)")
    parser.add_argument("--file", default=str(DEFAULT_SAMPLE), help="sample to stream (default: a 1.5 s LJSpeech clip)")
    parser.add_argument("--rtf", dest="speed_alias", type=float, default=None, help="alias of --speed")
    add_session_options(parser, speed_default=1000.0)


def main(args: argparse.Namespace) -> int:
    from gevent import monkey

    monkey.patch_all()
    from pathlib import Path

    from ..corpus import build_corpus
    from ..options import check_reachable, server_url, session_config
    from ..samples import Sample
    from ..session import run_session, worker_name
    from ..summary_text import session_summary_lines

    if args.speed_alias is not None:
        args.speed = args.speed_alias
    url = server_url(args.server)
    cfg = session_config(args, url, worker=worker_name())
    path = Path(args.file)
    clip = build_corpus([Sample(path.name, path, "")], args.silence_prefix).clips[0]
    check_reachable(url, args.connect_timeout)  # after the file: local mistakes first
    result = run_session(cfg, clip)
    if result.outcome == "ok":
        print(f"OK {url}: ready {result.ready_ms:.0f} ms, first response {_fmt(result.first_response_ms)}, "
              f"finalize {_fmt(result.finalize_ms)}, {len(result.words)} words: {result.transcript!r}")
        return 0
    print(f"FAIL {url}: {result.outcome}: {result.error}")
    for line in session_summary_lines(result)[1:]:
        print("  " + line)
    return 1


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} ms"
