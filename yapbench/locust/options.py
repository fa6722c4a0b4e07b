"""yapbench's options on Locust's command line and in its web UI."""

from __future__ import annotations

from locust import events

from ..options import SESSION_OPTIONS
from ..samples import DEFAULT_MANIFEST

DEFAULT_SAMPLES = "mid.wav,short-noisy.wav,real/en_*"
SHAPES = ("none", "ramp", "steps", "spike", "capacity")


@events.init_command_line_parser.add_listener
def add_options(parser) -> None:
    for opt in SESSION_OPTIONS:
        parser.add_argument(opt.flag, **opt.kwargs)
    parser.add_argument("--api-key", default="", is_secret=True,
                        help="API key (prefer $KYUTAI_API_KEY: a value here is visible in `ps`); never printed")
    parser.add_argument("--samples", default=DEFAULT_SAMPLES,
                        help="comma-separated manifest names or globs, or lang:en / lang:fr")
    parser.add_argument("--manifest", default=str(DEFAULT_MANIFEST), help="sample manifest (CSV with transcripts)")
    parser.add_argument("--target-policy", choices=("round_robin", "least_loaded"), default="round_robin",
                        help="how sessions spread over several --host targets (least_loaded: most free slots "
                             "by /api/modules_info)")
    parser.add_argument("--think-time", type=float, default=1.0,
                        help="mean seconds a user waits between sessions (uniform 0.5x..1.5x)")
    parser.add_argument("--run-dir", default="", help="where raw records and the report go (default reports/<run-id>)")
    parser.add_argument("--shape", choices=SHAPES, default="none",
                        help="load shape: ramp to -u over the run time, steps of --step-users every --step-time, "
                             "or a spike to -u in the middle third")
    parser.add_argument("--step-users", type=int, default=10, help="users added per step (--shape steps)")
    parser.add_argument("--step-time", type=float, default=30.0, help="seconds per step (--shape steps)")
    parser.add_argument("--capacity-spec", default="", include_in_web_ui=False,
                        help="search parameters for --shape capacity (written by `yapbench capacity`)")
    parser.add_argument("--provision", default="", include_in_web_ui=False,
                        help="hosts TOML: deploy/start the servers there (yapbench provision up), wait for Ready, "
                             "load them; on the master only")
    parser.add_argument("--known-hosts", default="", include_in_web_ui=False,
                        help="known_hosts file for --provision (default ~/.ssh/known_hosts)")
    parser.add_argument("--accept-new-host-keys", action="store_true", default=False, include_in_web_ui=False,
                        help="accept unknown SSH host keys for --provision (changed keys are always refused)")
    parser.add_argument("--gates", default="", help="gates TOML: the run's exit code follows its verdict")
    parser.add_argument("--baseline", default="", help="baseline run directory for the gates' regression limits")
    parser.add_argument("--no-report", action="store_true", default=False, include_in_web_ui=False,
                        help="do not build the HTML report at the end")
