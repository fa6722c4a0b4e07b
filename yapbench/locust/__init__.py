"""yapbench's Locust layer, wired as Locust's own integrations are.

Importing it adds yapbench's options to Locust's parser (options.py) and registers one `init` listener, `setup`,
which sets up the rest in an explicit order (see there). Per test, the recorder rebuilds its plan and opens a run
directory of its own at `test_start`; at `test_stop` the test's report is built. `locustfiles/stt.py` declares the
concrete user.
"""

from __future__ import annotations

import logging
import sys

from locust import events
from locust.env import Environment
from locust.runners import WorkerRunner

from . import arrival, exporter, finish, options, recorder, shapes, stalls, telemetry, webui  # noqa: F401
from ..errors import UserError
from .recorder import Recorder
from .shapes import RampShape, SpikeShape, StepShape
from .client import SttClient
from .user import SetupMissing, StreamingUser, SttUser

__all__ = ["SttUser", "StreamingUser", "SttClient", "SetupMissing", "RampShape", "StepShape", "SpikeShape", "setup"]
log = logging.getLogger("yapbench")


def setup(environment: Environment) -> Recorder:
    """Set yapbench up on `environment`, whose parsed_options hold yapbench's options; a UserError says what is
    unusable. The order matters: listeners of one event run in the order they are added."""
    opts = environment.parsed_options
    assert opts is not None  # (the init listener checked)
    if opts.provision and not isinstance(environment.runner, WorkerRunner):
        from .provisioned import bring_up_targets

        bring_up_targets(environment)  # (master) the servers first: the plan's targets are theirs
    rec = recorder.install(environment)  # first at test_start: the test's plan and run directory
    arrival.install(environment, rec)  # the open loop's clock, per test
    shapes.install(environment, rec)  # the command line's shape (master)
    telemetry.install(environment, rec)  # /metrics scraping per test, stopped at test_stop before the report
    exporter.install(environment, rec)  # --prometheus-port
    finish.install(environment, rec)  # last at test_stop: the report reads what the others wrote
    webui.install(environment, rec)  # the STT tab and the start form's check
    stalls.settle_after_init()  # last: gc.freeze() what setup made; setup held the loop, its cached clock is stale
    return rec


@events.init.add_listener
def _on_init(environment: Environment, **_kw) -> None:
    if environment.parsed_options is None or not hasattr(environment.parsed_options, "samples"):
        return  # a Locust run that did not load yapbench's options (SttUser then says so)
    try:
        rec = setup(environment)
    except UserError as exc:
        log.error("yapbench: %s", exc)
        sys.exit(2)
    if not rec.is_worker:
        log.info("yapbench: each test gets its own run directory, the first %s", rec.history.next_dir(rec.opts.run_dir))
