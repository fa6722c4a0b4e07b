"""`--prometheus-port PORT`: the master (or the only process) serves live load metrics for Prometheus from init to
quit, headless or with the web UI (yapbench.promexport holds the metrics; this wires them to the Locust run).

Workers export nothing: their records reach the master with every report, and the master exports them all.
"""

from __future__ import annotations

import logging

from locust.env import Environment

from ..errors import UserError
from .recorder import Recorder

log = logging.getLogger("yapbench")


def install(environment: Environment, rec: Recorder) -> None:
    port = rec.opts.prometheus_port
    if not port or rec.is_worker:
        return
    from ..promexport import LoadMetrics, serve  # prometheus_client only when asked for: imports delay the start

    def active_streams() -> int:
        rec.refresh_active()  # a standalone process counts its own streams; a master sums its workers' reports
        return rec.live.active_streams

    metrics = LoadMetrics(active_streams, lambda: environment.runner.user_count if environment.runner else 0)
    rec.record_listeners.append(metrics.add)
    try:
        server = serve(metrics, port)
    except OSError as exc:
        raise UserError(f"--prometheus-port {port}: cannot listen ({exc.strerror or exc})") from None
    log.info("yapbench: Prometheus metrics on http://0.0.0.0:%d/metrics", port)
    environment.events.quitting.add_listener(lambda **_: server[0].shutdown())
