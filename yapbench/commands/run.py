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
from ..options import On, add_cli_options, locust_args

LOCUSTFILE = Path(__file__).resolve().parent.parent / "locust" / "locustfile.py"


def configure(parser: argparse.ArgumentParser) -> None:
    add_cli_options(parser, On.RUN)


def locust_command(args: argparse.Namespace, host: str, run_dir: str) -> list[str]:
    """The Locust command line for this run (the API key travels in the environment, never here)."""
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
            *locust_args(vars(args) | {"host": host, "run_dir": run_dir})]


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


def run_load(args: argparse.Namespace, run_dir: str) -> int:
    """Locust against --provision's servers, --host (checked first), or the embedded reference server."""
    from ..options import check_reachable, server_urls

    if args.provision:
        return subprocess.call(locust_command(args, "", run_dir))
    if args.host:
        hosts = server_urls(args.host)
        for url in hosts:
            check_reachable(url, args.connect_timeout)
        return subprocess.call(locust_command(args, ",".join(hosts), run_dir))
    with embedded_server(args) as server:
        return subprocess.call(locust_command(args, server.url, run_dir))


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
