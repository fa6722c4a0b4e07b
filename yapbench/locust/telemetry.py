"""Server telemetry during a load: the master (or a standalone process) scrapes every target's /metrics into the
run directory's server_metrics.csv from test start to test stop (yapbench.servermetrics). With --provision the
scrapes go through the SSH access that deployed the servers.

A target without /metrics is not an error: the log says why once at the end, and the report says so in one line.
"""

from __future__ import annotations

import logging
from pathlib import Path

from locust import events
from locust.env import Environment

from ..servermetrics import Fetch, MetricsScraper
from .recorder import recorder_for, run_dir_of

log = logging.getLogger("yapbench")


class ServerTelemetry:
    def __init__(self, environment: Environment, run_dir: Path) -> None:
        rec = recorder_for(environment)
        targets = rec.targets  # refreshed by the recorder's own test_start listener
        fetchers: dict[str, Fetch] = {}
        self._executors: list = []
        if rec.opts.provision:
            from .provisioned import remote_metrics_fetchers

            fetchers, self._executors = remote_metrics_fetchers(rec.opts, targets)
        self.scraper = MetricsScraper(targets, run_dir, fetchers=fetchers)
        self.scraper.start()

    def stop(self) -> None:
        self.scraper.stop()
        for target, why in self.scraper.silent().items():
            log.info("yapbench: no server metrics from %s: %s", target, why)
        for executor in self._executors:
            executor.close()


_running: dict[int, ServerTelemetry] = {}


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_kw) -> None:
    run_dir = run_dir_of(environment)
    if run_dir is None:
        return  # a worker (the master scrapes), or a Locust run without yapbench's options
    previous = _running.pop(id(environment), None)
    if previous is not None:
        previous.stop()
    _running[id(environment)] = ServerTelemetry(environment, run_dir)


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_kw) -> None:
    telemetry = _running.pop(id(environment), None)
    if telemetry is not None:
        telemetry.stop()
