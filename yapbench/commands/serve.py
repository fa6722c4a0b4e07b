"""`yapbench serve`: the reference server, started like `moshi-server worker --config FILE --addr A --port P`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..errors import UserError
from ..server.engines import ENGINES

DEFAULT_ADDR = "127.0.0.1"
DEFAULT_PORT = 8000


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="moshi-server TOML config, or the name of a bundled one (config-stt-en_fr-hf.toml, "
                             "config-stt-en-hf.toml); default: the stt-1b-en_fr config")
    parser.add_argument("-a", "--addr", help=f"address to listen on (default {DEFAULT_ADDR})")
    parser.add_argument("-p", "--port", type=int, help=f"port (default {DEFAULT_PORT}; 0 picks a free one)")
    parser.add_argument("-l", "--log", "--log-level", dest="log_level", help="log level (default info)")
    parser.add_argument("--silent", action="store_true", help="no logging to stderr")
    g = parser.add_argument_group("yapbench")
    g.add_argument("--engine", choices=tuple(ENGINES), help="recognizer (default synthetic)")
    g.add_argument("--batch-size", type=int, help="number of slots (overrides the config)")
    g.add_argument("--asr-delay-in-tokens", type=int, help="model delay in 80 ms steps (overrides the config)")
    g.add_argument("--step-ms", type=float,
                   help="simulated step cost in ms (default: the engine's; synthetic 15)")
    g.add_argument("--step-ms-per-slot", type=float,
                   help="plus this many ms per slot of batch_size, as a GPU pays for the whole batch (default 0)")
    g.add_argument("--seed", type=int, help="seed for every random choice (faults), default 0")
    g.add_argument("--event-log", metavar="FILE", help="append a JSONL record of accepts, rejects and sends")
    g.add_argument("--manifest", metavar="FILE", help="sample manifest the synthetic engine recognises")
    g.add_argument("--api-key-env", metavar="VAR",
                   help="accept only the key held in this environment variable (keys never go on a command line)")
    f = parser.add_argument_group("faults (off by default; per-session ones hit --fault-sessions of the sessions)")
    f.add_argument("--fault-exit-after", dest="fault_exit_after_s", type=float, metavar="S",
                   help="exit abruptly (no close frames) S seconds after start")
    f.add_argument("--fault-error-after-steps", type=int, metavar="N", help="Error mid-stream after N frames")
    f.add_argument("--fault-stall-after-steps", type=int, metavar="N", help="stop reading and sending after N frames")
    f.add_argument("--fault-ready-delay-ms", type=float, metavar="MS", help="send Ready MS later")
    f.add_argument("--fault-close-1011-after-steps", type=int, metavar="N", help="close with code 1011 after N frames")
    f.add_argument("--fault-garbage-every", type=int, metavar="K", help="every K-th message sent is undecodable")
    f.add_argument("--fault-drop-words", type=float, metavar="P", help="drop this fraction of words")
    f.add_argument("--fault-sessions", type=float, metavar="F", help="fraction of sessions hit (default 1)")
    # Test-only knobs: the real values are right for everyone else.
    parser.add_argument("--ping-every-s", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--long-timeout-s", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--offline-tries", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--asyncio-loop", action="store_true", help=argparse.SUPPRESS)  # the fallback, even with uvloop


def _config_path(value: str | None) -> Path | None:
    from ..server.config import CONFIG_DIR

    if not value:
        return None
    p = Path(value)
    if not p.exists() and (CONFIG_DIR / value).exists():
        return CONFIG_DIR / value
    return p


def build_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from ..server.config import load_config, with_overrides

    config = load_config(_config_path(args.config))
    keys = None
    if args.api_key_env:
        value = os.environ.get(args.api_key_env)
        if not value:
            raise UserError(f"--api-key-env {args.api_key_env}: that environment variable is empty or unset")
        keys = [value]
    overrides = {name: getattr(args, name, None) for name in (
        "addr", "port", "log_level", "engine", "batch_size", "asr_delay_in_tokens", "step_ms", "step_ms_per_slot",
        "seed", "event_log", "manifest", "ping_every_s", "long_timeout_s", "fault_exit_after_s",
        "fault_error_after_steps", "fault_stall_after_steps", "fault_ready_delay_ms",
        "fault_close_1011_after_steps", "fault_garbage_every", "fault_drop_words", "fault_sessions")}
    config = with_overrides(config, api_keys=keys, **overrides)
    if config.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    return config


def main(args: argparse.Namespace) -> int:
    import logging
    import sys

    from ..server.app import OFFLINE_TRIES, Server

    config = build_config(args)
    logging.basicConfig(level=getattr(logging, config.log_level.upper(), logging.INFO),
                        stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.silent:
        logging.disable(logging.CRITICAL)
    try:
        server = Server(config, offline_tries=args.offline_tries or OFFLINE_TRIES)
    except OSError as exc:
        raise UserError(f"cannot start: {exc}") from None

    async def serve() -> None:
        try:
            await server.serve()
        except OSError as exc:
            raise UserError(f"cannot listen on {config.addr}:{config.port}: {exc.strerror or exc}") from None

    run_loop(serve(), allow_uvloop=not args.asyncio_loop)
    return 0


def run_loop(main, allow_uvloop: bool = True):  # type: ignore[no-untyped-def]
    """uvloop when it is installed (its event loop, sockets and transports are C: less Python per frame read and
    written), else asyncio's own loop; the server behaves the same on both."""
    import asyncio

    if allow_uvloop:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(main)
    return asyncio.run(main)
