"""What `yapbench client` and `yapbench warmup` share: one file, one server, one session's inputs."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..options import On, add_cli_options

if TYPE_CHECKING:  # the streaming modules import gevent and websocket: only after monkey-patching
    from ..session import SessionConfig
    from ..streamer import PreparedClip

SERVER_HELP = "HOST:PORT or ws:// URL (default $YAP_ADDR:$YAP_PORT or 127.0.0.1:8000)"


def add_single_stream_options(parser: argparse.ArgumentParser, speed_default: float = 1.0) -> None:
    parser.add_argument("--server", default=None, help=SERVER_HELP)
    parser.add_argument("--rtf", dest="speed_alias", type=float, default=None,
                        help="alias of --speed (the seed's name)")
    add_cli_options(parser, On.SINGLE)
    parser.set_defaults(speed=speed_default)


@dataclass(frozen=True)
class SingleStream:
    url: str
    cfg: "SessionConfig"
    clip: "PreparedClip"


def prepare(args: argparse.Namespace, file: str, check_server: bool = True) -> SingleStream:
    """Patch for gevent, check the file, then (unless told not to) that the server answers: local mistakes first."""
    from gevent import monkey

    monkey.patch_all()
    from ..corpus import build_corpus
    from ..options import check_reachable, server_url, session_config
    from ..samples import Sample
    from ..session import worker_name

    if args.speed_alias is not None:
        args.speed = args.speed_alias
    url = server_url(args.server)
    cfg = session_config(args, url, worker=worker_name())
    path = Path(file)
    clip = build_corpus([Sample(path.name, path, "")], args.silence_prefix).clips[0]
    if check_server:
        check_reachable(url, args.connect_timeout)
    return SingleStream(url, cfg, clip)
