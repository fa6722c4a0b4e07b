"""`yapbench run`: the main job. A headless Locust load, the report, the gates' verdict, in one command.

With no --host it first starts the embedded reference server on loopback, so `make run` shows the whole thing
on any machine. The load itself is Locust's own CLI (the same command a CI job would write by hand), run as a
child process: one code path for both, and Locust's --processes for more cores.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Iterator

from ..errors import UserError

from ..options import SESSION_OPTIONS, add_session_options

LOCUSTFILE = Path(__file__).resolve().parent.parent / "locust" / "locustfile.py"


def add_load_options(parser: argparse.ArgumentParser) -> None:
    """What every load command shares (run, capacity): where, what, how many processes, the embedded server."""
    parser.add_argument("--host", default=None,
                        help="server(s) to load: ws://HOST:PORT, comma-separated for a fleet "
                             "(default: start the embedded reference server on loopback)")
    parser.add_argument("--target-policy", choices=("round_robin", "least_loaded"), default="round_robin",
                        help="how streams spread over several targets")
    parser.add_argument("--processes", type=int, default=0,
                        help="Locust worker processes on this machine (0: one process; -1: one per core)")
    parser.add_argument("--samples", default=None, help="manifest names/globs or lang:xx (default: English speech)")
    parser.add_argument("--run-dir", default="", help="run directory (default reports/<run-id>)")
    parser.add_argument("--provision", default="", metavar="HOSTS_TOML",
                        help="deploy/start the servers of this inventory first (yapbench provision up), then load them")
    parser.add_argument("--known-hosts", default="", help="known_hosts file for --provision")
    parser.add_argument("--accept-new-host-keys", action="store_true", help="accept unknown SSH host keys (--provision)")
    server = parser.add_argument_group("embedded reference server (when neither --host nor --provision is given)")
    server.add_argument("--server-engine", default="synthetic", help="synthetic (default), sphinx or torch")
    server.add_argument("--server-batch-size", type=int, default=64, help="slots (default 64, as stt-1b-en_fr)")
    add_session_options(parser)


def configure(parser: argparse.ArgumentParser) -> None:
    add_load_options(parser)
    parser.add_argument("-u", "--users", type=int, default=20, help="concurrent streams (default 20)")
    parser.add_argument("-r", "--spawn-rate", type=float, default=5.0, help="users started per second (default 5)")
    parser.add_argument("-t", "--run-time", default="60s", help="load duration, e.g. 60s, 5m (default 60s)")
    parser.add_argument("--think-time", type=float, default=1.0, help="mean seconds between a user's sessions")
    parser.add_argument("--shape", choices=("none", "ramp", "steps", "spike"), default="none", help="load shape")
    parser.add_argument("--gates", default="", help="gates TOML: exit 1 when a gate fails")
    parser.add_argument("--baseline", default="", help="baseline run directory for regression gates")


def locust_command(args: argparse.Namespace, host: str, run_dir: str) -> list[str]:
    """The Locust command line for this run (the API key travels in the environment, never here)."""
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
           "-u", str(args.users), "-r", str(args.spawn_rate), "-t", args.run_time,
           "--think-time", str(args.think_time), "--shape", args.shape, "--target-policy", args.target_policy]
    if host:
        cmd += ["--host", host]
    if args.provision:
        cmd += ["--provision", args.provision]
        cmd += ["--known-hosts", args.known_hosts] if args.known_hosts else []
        cmd += ["--accept-new-host-keys"] if args.accept_new_host_keys else []
    if run_dir:
        cmd += ["--run-dir", run_dir]
    if args.processes:
        cmd += ["--processes", str(args.processes)]
    if args.samples:
        cmd += ["--samples", args.samples]
    for flag, value in (("--gates", args.gates), ("--baseline", args.baseline)):
        if value:
            cmd += [flag, value]
    for opt in SESSION_OPTIONS:
        value = getattr(args, opt.flag[2:].replace("-", "_"))
        if value not in ("", None):
            cmd += [opt.flag, str(value)]
    return cmd


def main(args: argparse.Namespace) -> int:
    import json
    import os

    from ..finish import DEFER_SUMMARY_ENV, print_summary
    from ..report import SUMMARY
    from ..runlog import default_run_dir

    run_dir = Path(args.run_dir or default_run_dir())
    os.environ[DEFER_SUMMARY_ENV] = "1"  # Locust prints its own tables last; yapbench's summary goes after them
    code = run_load(args, str(run_dir))
    if (run_dir / SUMMARY).exists():
        print()
        print_summary(json.loads((run_dir / SUMMARY).read_text(encoding="utf-8")), run_dir)
    return code


def run_load(args: argparse.Namespace, run_dir: str, *extra: str) -> int:
    """Locust against --provision's servers, --host (checked first), or the embedded reference server."""
    from ..options import check_reachable, server_urls

    if args.provision:
        return subprocess.call(locust_command(args, "", run_dir) + list(extra))
    if args.host:
        hosts = server_urls(args.host)
        for url in hosts:
            check_reachable(url, args.connect_timeout)
        return subprocess.call(locust_command(args, ",".join(hosts), run_dir) + list(extra))
    with embedded_server(args) as server:
        return subprocess.call(locust_command(args, server.url, run_dir) + list(extra))


@contextlib.contextmanager
def embedded_server(args: argparse.Namespace) -> Iterator:
    """The reference server on a free loopback port, accepting the key the load will send."""
    from ..options import read_api_key
    from ..server.launch import ServerStartError, start_server

    try:
        server = start_server(engine=args.server_engine, batch_size=args.server_batch_size,
                              api_key=read_api_key(args.api_key_file))
    except ServerStartError as exc:
        raise UserError(f"the embedded reference server did not start: {exc}") from None
    print(f"embedded reference server ({args.server_engine} engine, {args.server_batch_size} slots) on {server.url}",
          file=sys.stderr)
    with server:
        yield server
