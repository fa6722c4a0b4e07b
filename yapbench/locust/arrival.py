"""Open-loop load in Locust (`--arrival-rate R`): sessions start when they are due, not when earlier ones end.

Design (docs/open-loop.md): one `ArrivalClock` greenlet per load process walks its share of the global schedule
(yapbench.arrivals.ArrivalPlan). Locust's users stay what Locust scales and shows, but in this mode each one is a
*slot* of the concurrency cap (-u, which Locust already splits across workers): an idle user waits on the clock,
which hands each due arrival to an idle user. An arrival that finds no idle user (the cap is reached), or that the
clock or the woken user reaches more than --arrival-late-limit after its due time (the generator is late), is
recorded as `dropped` with its lateness, never started late. Rejections do not slow the clock: no think time and
no backoff in this mode, and a user that was rejected is simply idle again.

Why users as slots rather than a scheduler spawning bare greenlets: Locust's user count, spawn rate, per-worker
split, web UI edits and graceful stop (--stop-timeout, in-flight sessions recorded as cancelled) then apply
unchanged, and the session code path is the closed loop's own.

Distributed runs: at test start the master stamps the schedule's start time and the worker count into the options
it sends every worker with the spawn message; worker i then draws its share (Poisson R/W, or the constant grid's
every W-th arrival from phase i), so the workers together follow one schedule without synchronised bursts.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque

import gevent
from gevent.event import AsyncResult
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner

from ..arrivals import ArrivalPlan
from ..errors import UserError
from ..goodput import parse_objectives
from ..metrics import Outcome, SessionResult
from ..session import epoch
from .client import REQUEST_TYPE
from .recorder import Recorder, recorder_for

log = logging.getLogger("yapbench")
START_LEAD_S = 0.5  # the schedule starts this far after test start: the users (and workers) exist by then
EPOCH_OPTION = "arrival_epoch"  # set by the master at test start; travels to the workers with the options
WORKERS_OPTION = "arrival_workers"


class ArrivalClock:
    """This process's share of the schedule; idle users take arrivals from it with `next_due()`."""

    def __init__(self, environment: Environment, plan: ArrivalPlan, start_epoch: float, late_limit_s: float) -> None:
        self.environment = environment
        self.recorder = recorder_for(environment)
        self.plan = plan
        self.late_limit_s = late_limit_s
        # Due times are compared on this process's monotonic clock, anchored once to the shared epoch start.
        self.start_perf = time.perf_counter() + (start_epoch - time.time())
        self._idle: deque[AsyncResult] = deque()
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        """No more arrivals: the clock stops and every idle user is released (its task returns at once)."""
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None
        while self._idle:
            self._idle.popleft().set(None)

    def next_due(self) -> float | None:
        """Block an idle user until an arrival is handed to it: its due time (perf_counter), or None when the
        clock stopped or the arrival came too late to start (then it is already recorded as dropped)."""
        if self._greenlet is None:
            gevent.sleep(0.2)  # between tests (or after the last arrival): do not spin
            return None
        slot = AsyncResult()
        self._idle.append(slot)
        try:
            due = slot.get()
        finally:
            if not slot.ready():  # killed while idle (stop, fewer users): never hand this slot an arrival
                self._idle.remove(slot)
        if due is None:
            return None
        late = time.perf_counter() - due
        if late > self.late_limit_s:
            self.drop(due, f"the generator started it {late * 1000:.0f} ms late "
                           f"(limit {self.late_limit_s * 1000:.0f} ms: add workers)")
            return None
        return due

    def _run(self) -> None:
        for offset in self.plan.offsets(seed=random.randrange(1 << 62)):
            due = self.start_perf + offset
            wait = due - time.perf_counter()
            if wait > 0:
                gevent.sleep(wait)
            late = time.perf_counter() - due
            if late > self.late_limit_s:
                self.drop(due, f"the arrival clock woke {late * 1000:.0f} ms late "
                               f"(limit {self.late_limit_s * 1000:.0f} ms: add workers)")
            elif self._idle:
                self._idle.popleft().set(due)
            else:
                self.drop(due, "the concurrency cap was reached (all -u sessions of this process busy)")

    def drop(self, due: float, why: str) -> None:
        """Record the arrival due at `due` (perf_counter) as dropped, with its lateness and why."""
        late_s = time.perf_counter() - due
        now = time.time()
        result = SessionResult(session_id=f"d{random.getrandbits(60):015x}", target="", sample="",
                               speed=self.recorder.plan.session_cfg.speed, started_at=epoch(due),
                               outcome=Outcome.DROPPED, error=why, ended_at=now,
                               worker=self.recorder.plan.session_cfg.worker,
                               due_at=epoch(due), start_lag_ms=late_s * 1000.0)
        self.recorder.record(result)
        # Locust's failure table shows drops beside the sessions' failures.
        self.environment.events.request.fire(request_type=REQUEST_TYPE, name="session", response_time=None,
                                             response_length=0, exception=DroppedArrival(why.split(" (")[0]),
                                             context={"outcome": str(Outcome.DROPPED)})


class DroppedArrival(Exception):
    """The failure Locust shows for an arrival that could not start on time."""


def clock_for(environment: Environment) -> ArrivalClock | None:
    """This test's arrival clock (running, or stopped at the end of the test), or None in the closed loop."""
    clock = recorder_for(environment).arrival_clock
    return clock if isinstance(clock, ArrivalClock) else None


def plan_from_options(opts, workers: int = 1, index: int = 0) -> ArrivalPlan | None:
    rate = getattr(opts, "arrival_rate", 0.0) or 0.0
    if rate <= 0:
        return None
    try:
        return ArrivalPlan(rate=float(rate), process=opts.arrival, workers=max(1, workers),
                           index=index % max(1, workers))
    except ValueError as exc:
        raise UserError(f"--arrival-rate / --arrival: {exc}") from None


def install(environment: Environment, rec: Recorder) -> None:
    """Bad open-loop options or goodput objectives are one line and exit 2 before any load (a UserError here);
    then the clock's listeners, after the recorder's (its test start makes the run directory)."""
    opts = rec.opts
    if opts.arrival_rate < 0 or opts.arrival_late_limit <= 0:
        raise UserError("--arrival-rate must be >= 0 (0: closed loop) and --arrival-late-limit > 0")
    plan_from_options(opts)
    parse_objectives(opts.goodput)
    environment.events.test_start.add_listener(lambda **_: _on_test_start(environment, rec))
    # The stopped clock stays until the next test start: the users stay slots that get no arrival (never falling
    # back to the closed loop's back-to-back sessions while Locust stops them).
    environment.events.test_stopping.add_listener(lambda **_: _on_test_stopping(environment))


def _on_test_start(environment: Environment, rec: Recorder) -> None:
    opts = rec.opts
    runner = environment.runner
    if rec.runlog is not None:
        _write_goodput_meta(rec, opts.goodput)
    previous = clock_for(environment)
    rec.arrival_clock = None
    if previous is not None:
        previous.stop()
    if isinstance(runner, WorkerRunner):
        plan = plan_from_options(opts, getattr(opts, WORKERS_OPTION, 1), runner.worker_index)
        start = getattr(opts, EPOCH_OPTION, None) or time.time()
    else:
        # The schedule starts a little ahead, when the first users exist; on the master its start and the worker
        # count go to every worker with the spawn message, so that they all follow one schedule.
        start = time.time() + START_LEAD_S
        setattr(opts, EPOCH_OPTION, start)
        setattr(opts, WORKERS_OPTION, max(1, runner.worker_count) if isinstance(runner, MasterRunner) else 1)
        plan = plan_from_options(opts)
        if plan is not None and rec.runlog is not None:
            rec.runlog.write_meta({"arrival_start": start})
        if isinstance(runner, MasterRunner):
            return
    if plan is None:
        return
    clock = ArrivalClock(environment, plan, start, opts.arrival_late_limit)
    rec.arrival_clock = clock
    clock.start()
    log.info("yapbench: open loop: %s arrivals at %g sessions/s (this process: %g/s), at most %d concurrent in all",
             plan.process, plan.rate, plan.rate / plan.workers, opts.num_users or 0)


def _on_test_stopping(environment: Environment) -> None:
    clock = clock_for(environment)
    if clock is not None:
        clock.stop()


def _write_goodput_meta(rec: Recorder, text: str) -> None:
    """The objectives as records in run.json, for the report; from the web UI form they are first checked here."""
    assert rec.runlog is not None
    meta: dict[str, object]
    try:
        meta = {"goodput": [o.record() for o in parse_objectives(text)], "goodput_error": None}
    except UserError as exc:
        log.error("yapbench: --goodput: %s", exc)
        meta = {"goodput": [], "goodput_error": str(exc)}
    rec.runlog.write_meta(meta)
