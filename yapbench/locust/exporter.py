"""`--prometheus-port PORT`: the master (or the only process) serves live load metrics for Prometheus from init to
quit, headless or with the web UI (yapbench.promexport holds the metrics; this wires them to the Locust run).

Workers export nothing: their records reach the master with every report, and the master exports them all.
"""

from __future__ import annotations

import logging
import sys
import threading
from wsgiref.simple_server import WSGIServer

from locust import events
from locust.env import Environment
from locust.runners import WorkerRunner

from .recorder import recorder_for

log = logging.getLogger("yapbench")
_servers: dict[int, tuple[WSGIServer, threading.Thread]] = {}


@events.init.add_listener
def _on_init(environment: Environment, **_kw) -> None:
    opts = environment.parsed_options
    port = getattr(opts, "prometheus_port", 0) if opts is not None else 0
    if not port or isinstance(environment.runner, WorkerRunner):
        return
    from ..promexport import LoadMetrics, serve  # prometheus_client only when asked for: imports delay the start

    rec = recorder_for(environment)  # created by the recorder's init listener, which runs first

    def active_streams() -> int:
        rec.refresh_active()  # a standalone process counts its own streams; a master sums its workers' reports
        return rec.live.active_streams

    metrics = LoadMetrics(active_streams, lambda: environment.runner.user_count if environment.runner else 0)
    rec.record_listeners.append(metrics.add)
    try:
        _servers[id(environment)] = serve(metrics, port)
    except OSError as exc:
        log.error("yapbench: --prometheus-port %d: cannot listen (%s)", port, exc.strerror or exc)
        sys.exit(2)
    log.info("yapbench: Prometheus metrics on http://0.0.0.0:%d/metrics", port)


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_kw) -> None:
    server = _servers.pop(id(environment), None)
    if server is not None:
        server[0].shutdown()
