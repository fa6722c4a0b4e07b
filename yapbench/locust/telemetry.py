"""Server telemetry during a load: the master (or a standalone process) scrapes every target's /metrics into the
run directory's server_metrics.csv from test start to test stop (yapbench.servermetrics). With --provision the
scrapes go through the SSH access that deployed the servers.

A target without /metrics is not an error: the log says why once at the end, and the report says so in one line.
"""

from __future__ import annotations

import logging

from pathlib import Path
from typing import Any

from locust.env import Environment

from ..servermetrics import Fetch, MetricsScraper
from .recorder import Recorder

log = logging.getLogger("yapbench")


class ServerTelemetry:
    def __init__(self, opts: Any, targets: list[str], run_dir: Path) -> None:
        fetchers: dict[str, Fetch] = {}
        self._executors: list = []
        if opts.provision:
            from .provisioned import remote_metrics_fetchers

            fetchers, self._executors = remote_metrics_fetchers(opts, targets)
        self.scraper = MetricsScraper(targets, run_dir, fetchers=fetchers)
        self.scraper.start()

    def stop(self) -> None:
        self.scraper.stop()
        for target, why in self.scraper.silent().items():
            log.info("yapbench: no server metrics from %s: %s", target, why)
        for executor in self._executors:
            executor.close()


def install(environment: Environment, rec: Recorder) -> None:
    """Scrape during each test; after the recorder's test start (the test's plan and run directory), and stopped
    at test stop before the report reads server_metrics.csv."""
    if rec.is_worker:
        return  # the master scrapes
    running: list[ServerTelemetry] = []

    def start(**_kw) -> None:
        stop()
        if rec.runlog is not None:
            running.append(ServerTelemetry(rec.opts, rec.plan.targets, rec.runlog.dir))

    def stop(**_kw) -> None:
        while running:
            running.pop().stop()

    environment.events.test_start.add_listener(start)
    environment.events.test_stop.add_listener(stop)
