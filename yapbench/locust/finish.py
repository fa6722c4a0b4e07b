"""The end of each test, on the master or a standalone process: its run directory closed, its report built, its
gates applied; and the process's exit code at quit: the worst of its tests' (0 pass, 1 a gate failed or nothing
completed, 2 unusable).

The exit code is yapbench's, not Locust's "any failure exits 1": the gates' verdict with --gates, else 1 only when
no session completed. So a headless locust run is a CI gate by itself. The report is built in a child process
(yapbench.finish): in this one pandas and matplotlib would hold the event loop for seconds, and the web UI with it.
"""

from __future__ import annotations

import logging
import sys

import gevent.subprocess
from locust.env import Environment
from locust.runners import STATE_STOPPED

from .recorder import Recorder

log = logging.getLogger("yapbench")


def install(environment: Environment, rec: Recorder) -> None:
    """Last of the test_stop listeners: the others (samplers, scrapers) have written their files by then."""
    if rec.is_worker:
        return
    environment.events.test_stop.add_listener(lambda **_: finish_test(environment, rec))
    environment.events.quitting.add_listener(lambda **_: _on_quitting(environment, rec))


def finish_test(environment: Environment, rec: Recorder) -> None:
    test = rec.end_test()
    if test is None:
        return
    opts = rec.opts
    cmd = [sys.executable, "-m", "yapbench.finish", str(test.dir)]
    if opts.no_report:
        cmd.append("--no-report")
    if opts.gates:
        cmd += ["--gates", opts.gates]
    if opts.baseline:
        cmd += ["--baseline", opts.baseline]
    if opts.shape == "capacity":
        cmd.append("--capacity")
    test.exit_code = gevent.subprocess.call(cmd)
    environment.process_exit_code = max(t.exit_code for t in rec.history.entries if t.exit_code is not None)


def _on_quitting(environment: Environment, rec: Recorder) -> None:
    # Locust fires `quitting` before it stops a running test when the process is told to end (SIGTERM, Ctrl-C):
    # stop it here, so that its test_stop closes and reports its run directory before the exit code is read.
    if rec.test is not None and environment.runner is not None and environment.runner.state != STATE_STOPPED:
        environment.runner.stop()
