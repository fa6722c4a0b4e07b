"""The Locust user: one streaming session per task, records and request events for every metric.

Shaped like Locust's own protocol integrations (locust/contrib): the session is the client, this abstract User
owns it and fires `events.request`, the locustfile declares the concrete user.
"""

from __future__ import annotations

import logging
import random
from dataclasses import replace

import gevent
from locust import User, task

from ..conversation import draw_conversation
from ..metricdefs import METRICS, Source
from ..metrics import NOT_SERVED, Outcome, SessionResult
from ..session import SessionCancelled, run_session
from .arrival import clock_for
from .recorder import recorder_for

log = logging.getLogger("yapbench")
REQUEST_TYPE = "STT"
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
# Locust hands a process each second's new users all at once (its dispatcher adds floor(rate) users per ~1 s tick).
# Started together, their upgrades would land in the same few milliseconds of the hub and delay every running
# stream's next frame; each new user instead starts its first session at a random point of that second.
START_SPREAD_S = 1.0
LOCUST_METRICS = tuple(m for m in METRICS if m.locust)


class SessionFailed(Exception):
    """The failure Locust shows for a session: its outcome, then what happened."""


class SttUser(User):
    """Streams paced speech to the server, one session per task; backs off when the server has no slot for it."""

    abstract = True

    def __init__(self, environment) -> None:
        super().__init__(environment)
        self.recorder = recorder_for(environment)
        self.rng = random.Random()
        self.failures_in_a_row = 0

    def on_start(self) -> None:
        if clock_for(self.environment) is None:  # (open loop: the arrival clock spreads the starts)
            gevent.sleep(self.rng.uniform(0.0, START_SPREAD_S))

    def wait_time(self) -> float:
        if clock_for(self.environment) is not None:
            return 0.0  # open loop: the arrival clock paces sessions; no think time, no backoff
        if self.failures_in_a_row:
            # Full jitter (uniform 0..cap): rejected users spread out instead of returning together.
            return self.rng.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** self.failures_in_a_row))
        think = self.environment.parsed_options.think_time
        return self.rng.uniform(0.5 * think, 1.5 * think)

    @task
    def stream(self) -> None:
        due = None
        clock = clock_for(self.environment)
        if clock is not None:  # open loop: this user is one slot of the cap; it waits for an arrival
            due = clock.next_due()
            if due is None:
                return
        if self.recorder.stopping:
            # The load is stopping: Locust's kill may still be on its way to this user, start nothing
            if clock is not None and due is not None:
                clock.drop(due, "the load was stopping when it was due")
            return
        plan = self.recorder.plan  # the current test's
        if plan.conversation is not None:  # samples drawn per turn
            clip = draw_conversation(plan.conversation, lambda rng: plan.corpus.pick(rng)[1], self.rng)
        else:
            clip = plan.corpus.pick(self.rng)[1]
        cfg = replace(plan.session_cfg, url=self.recorder.next_target())
        try:
            result = run_session(cfg, clip, due=due)
        except SessionCancelled as cancelled:
            self.report(cancelled.result)
            raise
        self.report(result)

    def report(self, result: SessionResult) -> None:
        # Sessions that started together end together; yielding between the steps of this bookkeeping lets the
        # hub's pacing timer run in between, so a burst of endings does not delay every stream's next frame.
        gevent.sleep(0)
        self.recorder.record(result)
        gevent.sleep(0)
        self.failures_in_a_row = self.failures_in_a_row + 1 if result.outcome in NOT_SERVED else 0
        if result.outcome == Outcome.AUTH_FAILED and self.failures_in_a_row == 1:
            log.error("yapbench: %s: %s (set $KYUTAI_API_KEY or --api-key-file)", result.target, result.error)
        fire = self.environment.events.request.fire
        for metric in LOCUST_METRICS:  # each its own row in Locust's statistics
            values = [getattr(result, metric.field)] if metric.source == Source.SESSION else \
                [getattr(w, metric.field) for w in result.words]
            for value in values:
                if value is not None:
                    fire(request_type=REQUEST_TYPE, name=metric.name, response_time=value, response_length=0,
                         exception=None, context={})
        if result.outcome == Outcome.OK:
            duration = (result.ended_at - result.started_at) * 1000.0
            fire(request_type=REQUEST_TYPE, name="session", response_time=duration, response_length=0,
                 exception=None, context={"outcome": str(result.outcome)})
        elif result.outcome != Outcome.CANCELLED:  # a cancelled session is the load's doing, not a result
            # Rejections and other failures carry no latency: they stay out of Locust's percentiles.
            fire(request_type=REQUEST_TYPE, name="session", response_time=None, response_length=0,
                 exception=SessionFailed(f"{result.outcome}: {_stable(result.error)}"),
                 context={"outcome": str(result.outcome)})


def _stable(error: str) -> str:
    """Locust groups failures by message: drop the volatile tail (numbers, addresses) of long messages."""
    return error.split(" (")[0] if len(error) > 60 else error
