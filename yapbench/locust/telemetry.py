"""Server telemetry during a load: the master (or a standalone process) scrapes every target's /metrics into the
run directory's server_metrics.csv from test start to test stop (yapbench.servermetrics). With --provision the
scrapes go through the SSH access that deployed the servers.

A target without /metrics is not an error: the log says why once at the end, and the report says so in one line.
"""

from __future__ import annotations

import logging

from locust import events
from locust.env import Environment

from ..servermetrics import MetricsScraper
from .recorder import recorder_for, run_dir_of

log = logging.getLogger("yapbench")


class ServerTelemetry:
    def __init__(self, environment: Environment) -> None:
        opts = environment.parsed_options
        targets = recorder_for(environment).targets  # refreshed by the recorder's own test_start listener
        fetchers, self._executors = {}, []
        if opts.provision:
            from .provisioned import remote_metrics_fetchers

            fetchers, self._executors = remote_metrics_fetchers(opts, targets)
        self.scraper = MetricsScraper(targets, run_dir_of(environment), fetchers=fetchers)
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
    if run_dir_of(environment) is None:
        return  # a worker (the master scrapes), or a Locust run without yapbench's options
    previous = _running.pop(id(environment), None)
    if previous is not None:
        previous.stop()
    _running[id(environment)] = ServerTelemetry(environment)


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_kw) -> None:
    telemetry = _running.pop(id(environment), None)
    if telemetry is not None:
        telemetry.stop()
