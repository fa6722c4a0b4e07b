"""`yapbench warmup`: a health check — stream a short sample fast, print OK with latencies or FAIL with the reason."""

from __future__ import annotations

import argparse

from ..samples import DEFAULT_MANIFEST
from .single import add_single_stream_options, prepare

DEFAULT_SAMPLE = DEFAULT_MANIFEST.parent / "real" / "en_ljspeech_LJ002-0020.wav"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--file", default=str(DEFAULT_SAMPLE), help="sample to stream (default: a 1.5 s LJSpeech clip)")
    add_single_stream_options(parser, speed_default=1000.0)


def main(args: argparse.Namespace) -> int:
    one = prepare(args, args.file, check_server=False)  # a dead server is what a health check reports: FAIL, 1
    from ..session import run_session
    from ..summary_text import session_summary_lines

    result = run_session(one.cfg, one.clip)
    if result.outcome == "ok":
        print(f"OK {one.url}: ready {result.ready_ms:.0f} ms, first response {_fmt(result.first_response_ms)}, "
              f"finalize {_fmt(result.finalize_ms)}, {len(result.words)} words: {result.transcript!r}")
        return 0
    print(f"FAIL {one.url}: {result.outcome}: {result.error}")
    for line in session_summary_lines(result)[1:]:
        print("  " + line)
    return 1


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} ms"
