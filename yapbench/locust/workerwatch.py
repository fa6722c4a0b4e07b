"""The master's view of its workers: which one stopped answering, when, and what it had handed over by then.

Workers ship their records with every periodic report, so a worker that dies loses only what it held since its
last report; the rest is already in the run directory. Locust marks a worker "missing" after a few seconds
without a heartbeat and moves its users to the others, but says so only in its log. Here each loss goes into
run.json (`workers_lost`) and the master's log, with the worker's last report and the sessions it had delivered,
so a run that lost part of its generator says so in its report instead of looking merely smaller.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import gevent
from locust.runners import STATE_MISSING, MasterRunner

log = logging.getLogger("yapbench")
CHECK_INTERVAL_S = 1.0


@dataclass
class WorkerLoss:
    worker: str  # Locust's client id of the worker
    name: str  # the worker field of its session records (host:pid)
    lost_at: float  # epoch seconds the master noticed (a few seconds after the last heartbeat)
    last_report_at: float | None  # epoch seconds of the last records it handed over (None: never reported)
    sessions_delivered: int  # sessions it had handed over in all; they are in the run directory
    returned_at: float | None = None  # it answered again (a worker stalled rather than dead)


class WorkerWatch:
    """Master only: counts each worker's deliveries and notices workers that go missing or vanish."""

    def __init__(self, runner: MasterRunner, on_change) -> None:
        self.runner = runner
        self.on_change = on_change  # called with the list of losses (as dicts) whenever it changes
        self.last_report: dict[str, float] = {}
        self.delivered: dict[str, int] = {}
        self.names: dict[str, str] = {}
        self.losses: dict[str, WorkerLoss] = {}
        self._greenlet: gevent.Greenlet | None = None

    def delivered_by(self, worker: str, name: str, sessions: int) -> None:
        self.names[worker] = name
        self.last_report[worker] = time.time()
        self.delivered[worker] = self.delivered.get(worker, 0) + sessions
        loss = self.losses.get(worker)
        if loss is not None and loss.returned_at is None:
            loss.returned_at = time.time()
            log.warning("yapbench: worker %s answers again after %.0f s", worker, loss.returned_at - loss.lost_at)
            self._changed()

    def start(self) -> None:
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._watch)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None

    def check(self) -> None:
        present = {c.id: c.state for c in self.runner.clients.values()}
        for worker in set(self.delivered) | set(present):
            gone = worker not in present or present[worker] == STATE_MISSING
            loss = self.losses.get(worker)
            if gone and (loss is None or loss.returned_at is not None):
                self.losses[worker] = WorkerLoss(worker, self.names.get(worker, ""), time.time(),
                                                 self.last_report.get(worker), self.delivered.get(worker, 0))
                log.warning("yapbench: lost worker %s (no heartbeat); the %d sessions it handed over are kept, "
                            "those it held since its last report are not", worker, self.delivered.get(worker, 0))
                self._changed()

    def _watch(self) -> None:
        while True:
            gevent.sleep(CHECK_INTERVAL_S)
            try:
                self.check()
            except Exception:  # the watch must never take the master down
                log.exception("yapbench: worker watch")

    def _changed(self) -> None:
        self.on_change([asdict(loss) for loss in self.losses.values()])
