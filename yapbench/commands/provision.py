"""`yapbench provision plan|up|status|stop|clean|workers`: deploy the STT server on GPU hosts over SSH."""

from __future__ import annotations

import argparse
import threading
from typing import Any

ACTIONS = {
    "plan": "run every check for real and show what `up` would change (changes nothing)",
    "up": "install CUDA 12.4 + Rust, build, configure and start the server in tmux, wait for Ready",
    "status": "tmux sessions, ports, readiness, slots, log tails, GPUs",
    "stop": "stop the servers (tmux session, then the recorded pid)",
    "clean": "stop and remove runtime files; --all also removes what provision installed",
    "workers": "install yapbench on load hosts and start Locust workers there",
}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--hosts", required=True,
                   help="inventory TOML file, or user@host[:port] list (comma or space separated)")
    p.add_argument("--user", help="SSH user (default: the inventory's, else your local user)")
    p.add_argument("--key", dest="key_file", help="SSH private key file")
    p.add_argument("--known-hosts", help="known_hosts file to verify host keys (default ~/.ssh/known_hosts)")
    p.add_argument("--accept-new-host-keys", action="store_true",
                   help="accept hosts whose key is not in known_hosts (a changed key is still refused)")
    p.add_argument("--ask-sudo-pass", action="store_true",
                   help="prompt for the sudo password (or set YAPBENCH_SUDO_PASSWORD)")
    p.add_argument("--parallel", type=int, default=16, metavar="N", help="hosts at a time (default 16)")
    p.add_argument("--serial", action="store_true", help="one host at a time")
    p.add_argument("--connect-timeout", type=int, default=15, metavar="S")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON ('-' for stdout)")
    p.add_argument("--log-dir", help="write each host's commands and output to DIR/<host>.log")
    p.add_argument("--port", type=int, help="server port of the first instance (default 8000)")
    p.add_argument("--gpus", help='"all" (default), a count, or indices like 0,1')
    p.add_argument("--tmux-socket", help="tmux -L socket name on the hosts")


def _server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", choices=["en_fr", "en"], help="STT model config (default en_fr, the 1B model)")
    p.add_argument("--batch-size", type=int, help="concurrent streams per server (default: the model's)")
    p.add_argument("--compute-cap", help="CUDA_COMPUTE_CAP to build for, e.g. 89 (default: from nvidia-smi)")
    p.add_argument("--server-command",
                   help="run this instead of building moshi-server ({config}, {port}, {addr} are filled in)")
    p.add_argument("--ready-timeout", type=float, help="seconds to wait for Ready (default 900)")


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, help_text in ACTIONS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _common(p)
        if name in ("plan", "up", "status"):
            _server_options(p)
        if name == "clean":
            p.add_argument("--all", dest="everything", action="store_true",
                           help="also remove the server binary, Rust, the apt packages provision installed, the "
                                "base directory (state, HF cache)")
        if name == "workers":
            p.add_argument("--master", required=False, help="Locust master host the workers connect to")
            p.add_argument("--master-port", type=int, default=5557)
            p.add_argument("--processes", type=int, help="Locust worker processes per host (--processes)")
            p.add_argument("--stop", action="store_true", help="stop the workers instead")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from yapbench.errors import UserError

    gpus: Any = args.gpus
    if gpus is not None and gpus != "all":
        try:
            gpus = [int(x) for x in gpus.split(",")] if "," in gpus else int(gpus)
        except ValueError:
            raise UserError(f"--gpus {args.gpus!r}: expected all, a count, or indices like 0,1") from None
    return {"user": args.user, "key_file": args.key_file, "port": args.port, "gpus": gpus,
            "tmux_socket": args.tmux_socket, "model": getattr(args, "model", None),
            "batch_size": getattr(args, "batch_size", None), "compute_cap": getattr(args, "compute_cap", None),
            "server_command": getattr(args, "server_command", None),
            "ready_timeout": getattr(args, "ready_timeout", None)}


class ProgressView:
    """Live per-host line: which step each host is on (rich re-renders it a few times a second)."""

    def __init__(self, hosts: list[str]):
        self.lock = threading.Lock()
        self.state = {h: "waiting" for h in hosts}

    def __call__(self, host: str, step: str, status: str) -> None:
        with self.lock:
            self.state[host] = f"{step}: {status}"

    def __rich__(self) -> Any:
        from rich.table import Table

        t = Table.grid(padding=(0, 2))
        with self.lock:
            for host, text in self.state.items():
                t.add_row(f"[bold]{host}[/]", text)
        return t


def main(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    from provision import api, recap
    from provision.credentials import load_secrets
    from provision.executor import SshOptions

    secrets = load_secrets(ask_sudo_password=args.ask_sudo_pass)
    if args.action in ("up", "plan"):
        secrets.require_api_key()
    ssh = SshOptions(known_hosts=args.known_hosts, accept_new_host_keys=args.accept_new_host_keys,
                     connect_timeout=args.connect_timeout, sudo_password=secrets.sudo_password)
    hosts = api.resolve_hosts(args.hosts, _overrides(args))
    common = dict(ssh=ssh, secrets=secrets, max_workers=1 if args.serial else args.parallel, log_dir=args.log_dir)

    if args.action == "workers":
        from provision import workers

        make_steps = workers.stop_steps if args.stop else workers.up_steps(args.master, args.master_port,
                                                                            args.processes)
        run = lambda **kw: api.execute(hosts, make_steps, **kw)  # noqa: E731
    elif args.action == "clean":
        run = lambda **kw: api.clean(hosts, everything=args.everything, **kw)  # noqa: E731
    else:
        run = lambda **kw: getattr(api, args.action)(hosts, **kw)  # noqa: E731

    console = Console(stderr=True)
    view = ProgressView([h.name for h in hosts])
    with Live(view, console=console, transient=True, refresh_per_second=4):
        results = run(progress=view, **common)
    recap.print_recap(args.action, results, console)
    if args.json:
        recap.write_json(args.action, results, args.json)
    return 0 if all(r.ok for r in results) else 1
