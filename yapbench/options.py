"""Session options shared by every command that streams (client, warmup, run, capacity) and the Locust users.

One table, two consumers: argparse for `yapbench ...` and Locust's parser (which shows them in the web UI).
The API key is never an option value on a command line: it comes from $KYUTAI_API_KEY or a file.
"""

from __future__ import annotations

import argparse
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import UserError
from .session import SessionConfig

API_KEY_ENV = "KYUTAI_API_KEY"
DEFAULT_API_KEY = "public_token"  # the official configs' authorized_ids


@dataclass(frozen=True)
class Option:
    flag: str
    kwargs: dict[str, Any]


SESSION_OPTIONS = (
    Option("--speed", dict(type=float, default=1.0, help="audio speed factor: 1.0 = real time, 2.0 = twice as fast")),
    Option("--auth", dict(choices=["header", "query"], default="header",
                          help="send the key as the kyutai-api-key header or the ?auth_id= query parameter")),
    Option("--api-key-file", dict(default="", help=f"file holding the API key (default: ${API_KEY_ENV}, "
                                                   f"else {DEFAULT_API_KEY!r})")),
    Option("--connect-timeout", dict(type=float, default=10.0, help="seconds for TCP connect + upgrade")),
    Option("--ready-timeout", dict(type=float, default=10.0, help="seconds from upgrade to Ready or Error")),
    Option("--flush-frames", dict(type=int, default=40,
                                  help="silence frames sent after the final Marker (> the model's delay in steps)")),
    Option("--flush-timeout", dict(type=float, default=15.0, help="seconds to wait for the Marker echo")),
    Option("--silence-prefix", dict(type=float, default=0.0,
                                    help="seconds of silence before the speech (the 2.6B model wants 1.0)")),
)


def add_session_options(parser: argparse.ArgumentParser, speed_default: float = 1.0) -> None:
    for opt in SESSION_OPTIONS:
        kwargs = dict(opt.kwargs)
        if opt.flag == "--speed":
            kwargs["default"] = speed_default
        parser.add_argument(opt.flag, **kwargs)


def read_api_key(api_key_file: str = "") -> str:
    if api_key_file:
        try:
            key = Path(api_key_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UserError(f"API key file {api_key_file}: {exc.strerror or exc}") from None
        if not key:
            raise UserError(f"API key file {api_key_file} is empty")
        return key
    return os.environ.get(API_KEY_ENV, "").strip() or DEFAULT_API_KEY


def session_config(args: Any, url: str, worker: str = "") -> SessionConfig:
    """SessionConfig from parsed options (argparse or Locust's), validated with a user-facing message."""
    try:
        return SessionConfig(
            url=url,
            api_key=read_api_key(getattr(args, "api_key_file", "")),
            auth=args.auth,
            speed=args.speed,
            connect_timeout_s=args.connect_timeout,
            ready_timeout_s=args.ready_timeout,
            flush_frames=args.flush_frames,
            flush_timeout_s=args.flush_timeout,
            worker=worker,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None


def server_url(host: str | None) -> str:
    """--host, else $YAP_ADDR/$YAP_PORT (the seed's variables), else the local default; validated."""
    from .session import normalize_url

    if not host:
        host = f"{os.environ.get('YAP_ADDR', '127.0.0.1')}:{os.environ.get('YAP_PORT', '8000')}"
    try:
        url = normalize_url(host)
    except ValueError as exc:
        raise UserError(f"server URL {exc}") from None
    try:
        urlsplit(url).port  # parsed lazily: a bad port would otherwise surface mid-run, in every session
    except ValueError:
        raise UserError(f"server URL {host}: the port must be a number from 1 to 65535") from None
    return url


def server_urls(hosts: str | None) -> list[str]:
    """A comma-separated --host list (a fleet) as validated ws:// URLs; empty: the one default server_url."""
    return [server_url(h or None) for h in ([h.strip() for h in (hosts or "").split(",") if h.strip()] or [""])]


def check_reachable(url: str, timeout_s: float) -> None:
    """One TCP connect before the work starts: an address nothing answers on is for the user to fix (exit 2),
    not a session to measure."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except ConnectionRefusedError:
        raise UserError(f"server {parts.netloc}: connection refused (is the server running, on that port?)") from None
    except socket.gaierror as exc:
        raise UserError(f"server {parts.netloc}: unknown host ({exc.strerror or exc})") from None
    except TimeoutError:
        raise UserError(f"server {parts.netloc}: no answer within {timeout_s:g} s (address, firewall?)") from None
    except OSError as exc:
        raise UserError(f"server {parts.netloc}: cannot connect ({exc.strerror or exc})") from None
