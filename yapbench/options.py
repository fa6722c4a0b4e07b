"""Every option that more than one surface shares, declared once: yapbench's commands, Locust's parser and web UI
form, and the Locust command line that `yapbench run` and `yapbench capacity` build.

Each `Option` says where it appears (`On`); `add_cli_options`, `add_locust_options` and `locust_args` read the one
table, so adding an option is one entry (docs/design.md, "Adding an option"). An option of one command alone that
Locust never sees (client's FILE, capacity's search) stays in that command's `configure`.
The API key is never an option value on yapbench's command line: it comes from $KYUTAI_API_KEY or a file.
"""

from __future__ import annotations

import argparse
import enum
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from .arrivals import ARRIVAL_PROCESSES
from .conversation import ConversationSpec, parse_conversation
from .errors import UserError
from .report.phases import DEFAULT_SETTLE_S
from .samples import DEFAULT_MANIFEST
from .session import SessionConfig

API_KEY_ENV = "KYUTAI_API_KEY"
DEFAULT_API_KEY = "public_token"  # the official configs' authorized_ids
DEFAULT_SAMPLES = "mid.wav,short-noisy.wav,real/en_*"
SHAPES = ("none", "ramp", "steps", "spike", "capacity")  # capacity: `yapbench capacity`'s search, not for users


class On(enum.Flag):
    """Where an option appears."""

    SINGLE = enum.auto()  # yapbench client, yapbench warmup (one stream)
    RUN = enum.auto()  # yapbench run
    CAPACITY = enum.auto()  # yapbench capacity
    LOCUST = enum.auto()  # yapbench's Locust parser (`locust -f locustfiles/stt.py --help`, "Custom arguments")
    WEB_UI = enum.auto()  # ...and Locust's web UI start form (with LOCUST)
    PASSED = enum.auto()  # on the Locust command line that yapbench run / capacity build, when set


LOAD = On.RUN | On.CAPACITY
LOCUST_FORM = On.LOCUST | On.WEB_UI
SESSION = On.SINGLE | LOAD | LOCUST_FORM | On.PASSED  # how one session streams: everywhere


@dataclass(frozen=True)
class Option:
    flags: tuple[str, ...]  # the long flag last
    on: On
    kwargs: dict[str, Any]  # argparse's add_argument keywords, the same on every surface
    cli: dict[str, Any] = field(default_factory=dict)  # what differs on yapbench's own commands
    group: str = ""  # an argument group on yapbench's --help
    secret: bool = False  # masked in the web UI

    @property
    def flag(self) -> str:
        return self.flags[-1]

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


def _opt(*flags: str, on: On, cli: dict[str, Any] | None = None, group: str = "", secret: bool = False,
         **kwargs: Any) -> Option:
    return Option(flags, on, kwargs, cli or {}, group, secret)


def _conversation_arg(value: str) -> str:
    """argparse's check of --conversation (the value stays text: Locust's web UI form sets it as text too)."""
    try:
        parse_conversation(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


EMBEDDED = "embedded reference server (when neither --host nor --provision is given)"

OPTIONS: tuple[Option, ...] = (
    # -- where the load goes (Locust's own --host, -u, -r, -t, --processes: passed on, never redeclared)
    _opt("--host", on=LOAD | On.PASSED, default=None,
         help="server(s) to load: ws://HOST:PORT, comma-separated for a fleet "
              "(default: start the embedded reference server on loopback)"),
    _opt("--target-policy", on=LOAD | LOCUST_FORM | On.PASSED, choices=("round_robin", "least_loaded"),
         default="round_robin",
         help="how sessions spread over several --host targets (least_loaded: most free slots by /api/modules_info)"),
    _opt("--processes", on=LOAD | On.PASSED, type=int, default=None,
         help="Locust worker processes on this machine (default: one process; -1: one per core)"),
    _opt("--provision", on=LOAD | On.LOCUST | On.PASSED, default="", metavar="HOSTS_TOML",
         help="hosts TOML: deploy/start the servers there (yapbench provision up), wait for Ready, load them; "
              "on the master only"),
    _opt("--known-hosts", on=LOAD | On.LOCUST | On.PASSED, default="",
         help="known_hosts file for --provision (default ~/.ssh/known_hosts)"),
    _opt("--accept-new-host-keys", on=LOAD | On.LOCUST | On.PASSED, action="store_true", default=False,
         help="accept unknown SSH host keys for --provision (changed keys are always refused)"),
    _opt("--server-engine", on=LOAD, group=EMBEDDED, default="synthetic",
         help="synthetic (default), sphinx, torch or moshi"),
    _opt("--server-batch-size", on=LOAD, group=EMBEDDED, type=int, default=64,
         help="slots (default 64, as stt-1b-en_fr)"),
    # -- what is streamed
    _opt("--samples", on=LOAD | LOCUST_FORM | On.PASSED, default=DEFAULT_SAMPLES,
         help="comma-separated manifest names or globs, or lang:en / lang:fr"),
    _opt("--manifest", on=LOAD | LOCUST_FORM | On.PASSED, default=str(DEFAULT_MANIFEST),
         help="sample manifest (CSV with transcripts)"),
    # -- how each session streams
    _opt("--speed", on=SESSION, type=float, default=1.0,
         help="audio speed factor: 1.0 = real time, 2.0 = twice as fast"),
    _opt("--auth", on=SESSION, choices=["header", "query"], default="header",
         help="send the key as the kyutai-api-key header or the ?auth_id= query parameter"),
    _opt("--api-key", on=LOCUST_FORM, secret=True, default="",
         help="API key (prefer $KYUTAI_API_KEY: a value here is visible in `ps`); never printed"),
    _opt("--api-key-file", on=SESSION, default="",
         help=f"file holding the API key (default: ${API_KEY_ENV}, else {DEFAULT_API_KEY!r})"),
    _opt("--connect-timeout", on=SESSION, type=float, default=10.0, help="seconds for TCP connect + upgrade"),
    _opt("--ready-timeout", on=SESSION, type=float, default=10.0, help="seconds from upgrade to Ready or Error"),
    _opt("--flush-frames", on=SESSION, type=int, default=40,
         help="silence frames sent after the final Marker (> the model's delay in steps)"),
    _opt("--flush-timeout", on=SESSION, type=float, default=15.0, help="seconds to wait for the Marker echo"),
    _opt("--silence-prefix", on=SESSION, type=float, default=0.0,
         help="seconds of silence before the speech (the 2.6B model wants 1.0)"),
    _opt("--conversation", on=LOAD | LOCUST_FORM | On.PASSED, default="", type=_conversation_arg,
         metavar="SPEC",
         help="conversations: several turns on one connection with silence streamed between them, e.g. "
              "'turns=3-6,pause=1.5-4s' (a single number is a fixed value); end of turn when prs[head] >= "
              "threshold (head=2, threshold=0.5, smoothing=none|unmute); the Marker flush only at the end, or "
              "after each turn too with flush=turn"),
    # -- the load over time (yapbench capacity sets these itself)
    _opt("-u", "--users", on=On.RUN | On.PASSED, type=int, default=20,
         help="concurrent streams (default 20); with --arrival-rate, the cap on concurrent sessions"),
    _opt("-r", "--spawn-rate", on=On.RUN | On.PASSED, type=float, default=5.0,
         help="users started per second (default 5)"),
    _opt("-t", "--run-time", on=On.RUN | On.PASSED, default="60s", help="load duration, e.g. 60s, 5m (default 60s)"),
    _opt("--think-time", on=On.RUN | LOCUST_FORM | On.PASSED, type=float, default=1.0,
         help="mean seconds a user waits between sessions (uniform 0.5x..1.5x)"),
    _opt("--shape", on=On.RUN | LOCUST_FORM | On.PASSED, choices=SHAPES, default="none", cli=dict(choices=SHAPES[:-1]),
         help="load shape: ramp to -u over the run time, steps of --step-users every --step-time, "
              "or a spike to -u in the middle third"),
    _opt("--step-users", on=On.RUN | LOCUST_FORM | On.PASSED, type=int, default=10,
         help="users added per step (--shape steps)"),
    _opt("--step-time", on=On.RUN | LOCUST_FORM | On.PASSED, type=float, default=30.0,
         help="seconds per step (--shape steps)"),
    # -- open loop (docs/open-loop.md): sessions arrive on a schedule, -u is the cap on concurrent sessions
    _opt("--arrival-rate", on=On.RUN | LOCUST_FORM | On.PASSED, type=float, default=0.0,
         help="open loop: sessions per second for the whole load (all workers), whatever the server does; -u is "
              "then the cap on concurrent sessions (default 0: closed loop)"),
    _opt("--arrival", on=LOAD | LOCUST_FORM | On.PASSED, choices=ARRIVAL_PROCESSES, default="poisson",
         help="open loop: arrival process, poisson (exponential gaps) or constant (even spacing)"),
    _opt("--arrival-late-limit", on=LOAD | LOCUST_FORM | On.PASSED, type=float, default=0.25,
         help="open loop: seconds an arrival may start after its due time before it counts as dropped"),
    _opt("--goodput", on=LOAD | LOCUST_FORM | On.PASSED, default="",
         help='per-session objectives, e.g. "first_word<=1000ms,word_lag.max<=2000ms,finalize<=500ms": goodput = '
              "share of sessions served that met them all (docs/open-loop.md)"),
    _opt("--capacity-spec", on=On.LOCUST | On.PASSED, default="",
         help="search parameters for --shape capacity (written by `yapbench capacity`)"),
    # -- the end of the run
    _opt("--run-dir", on=LOAD | LOCUST_FORM | On.PASSED, default="",
         help="where raw records and the report go (default reports/<run-id>)"),
    _opt("--settle", on=On.RUN | LOCUST_FORM | On.PASSED, type=float, default=DEFAULT_SETTLE_S,
         help="seconds after the last user started before the steady state, whose figures are the report's "
              "headline (the ramp and the drain are reported as their own phases)"),
    _opt("--gates", on=On.RUN | LOCUST_FORM | On.PASSED, default="",
         help="gates TOML: the run's exit code follows its verdict"),
    _opt("--baseline", on=On.RUN | LOCUST_FORM | On.PASSED, default="",
         help="baseline run directory for the gates' regression limits"),
    _opt("--no-report", on=On.RUN | On.LOCUST | On.PASSED, action="store_true", default=False,
         help="do not build the HTML report at the end (summary.json is still written)"),
    _opt("--prometheus-port", on=LOAD | On.LOCUST | On.PASSED, type=int, default=None, metavar="PORT",
         help="serve live load metrics for Prometheus on this port, on the master (docs/telemetry.md)"),
)


def add_cli_options(parser: argparse.ArgumentParser, command: On) -> None:
    """The table's options of one yapbench command (On.SINGLE, On.RUN or On.CAPACITY)."""
    groups: dict[str, Any] = {"": parser}
    for opt in OPTIONS:
        if command in opt.on:
            if opt.group not in groups:
                groups[opt.group] = parser.add_argument_group(opt.group)
            groups[opt.group].add_argument(*opt.flags, **(opt.kwargs | opt.cli))


# Locust's own --stop-timeout, which yapbench defaults to a bounded graceful stop (k6's gracefulStop is 30 s too):
# sessions in flight when the run time is up finish and are measured; only those still running after it are
# cancelled. Locust's default (0) would cut every session in flight and report it as cancelled.
GRACEFUL_STOP_S = 30.0


def add_locust_options(parser: Any) -> None:
    """The table's options on Locust's parser (a LocustArgumentParser), and which of them the web UI shows."""
    parser.set_defaults(stop_timeout=GRACEFUL_STOP_S)
    for opt in OPTIONS:
        if On.LOCUST in opt.on:
            parser.add_argument(*opt.flags, **opt.kwargs, include_in_web_ui=On.WEB_UI in opt.on,
                                is_secret=opt.secret)


def locust_args(values: Mapping[str, Any]) -> list[str]:
    """Locust command-line arguments for the passed-on options that are set in `values` (a Namespace's vars)."""
    args: list[str] = []
    for opt in OPTIONS:
        value = values.get(opt.dest)
        if On.PASSED not in opt.on or value is None or value == "" or value is False:
            continue
        args += [opt.flag] if value is True else [opt.flag, str(value)]
    return args


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


def conversation_spec(args: Any) -> ConversationSpec | None:
    """The parsed --conversation of argparse's or Locust's options (also what the web UI form set), or None."""
    try:
        return parse_conversation(getattr(args, "conversation", "") or "")
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
        urlsplit(url).port  # noqa: B018 (parsed lazily: a bad port would otherwise surface mid-run, in every session)
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
