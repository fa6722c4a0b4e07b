"""`yapbench` subcommands.

Each subcommand lives in its own module with two functions, ``configure(parser)`` and ``main(args) -> int``;
the module keeps heavy imports (gevent, locust, pandas) inside ``main`` so `yapbench --help` stays instant and
gevent's monkey-patching happens only in the commands that stream.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import UserError

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("yapbench.commands.run", "headless load against a server (default: the embedded reference server), report"),
    "serve": ("yapbench.commands.serve", "start the reference server (moshi-server STT imitation)"),
    "client": ("yapbench.commands.client", "stream one file, print words live and a latency summary"),
    "warmup": ("yapbench.commands.warmup", "health check: stream a short sample fast, OK or FAIL"),
    "report": ("yapbench.commands.report", "build report.html, PNGs and summary.json from a run directory"),
    "gate": ("yapbench.commands.gate", "apply thresholds (and a baseline) to a run: exit 0 pass, 1 fail"),
    "compare": ("yapbench.commands.compare", "two or more runs side by side: differences with confidence intervals"),
    "capacity": ("yapbench.commands.capacity", "find the most real-time streams a server holds under SLOs"),
    "provision": ("yapbench.commands.provision", "deploy yap-server / moshi-server on GPU hosts over SSH"),
}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="yapbench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"yapbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if not exc.name or not module_name.startswith(exc.name):
                raise
            continue  # a subcommand still being built
        # No abbreviations: `--api-key KEY` must not be taken for --api-key-file (and the key named in its error).
        p = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        module.configure(p)
        p.set_defaults(_main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_main", None):
        parser.print_help()
        return 2
    try:
        return int(args._main(args) or 0)
    except UserError as exc:
        print(f"yapbench {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"yapbench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
