"""The session runner a user holds as `self.client`, as HttpUser holds an HTTP session: a locustfile composes its
own scenario from `self.client.stream(...)` calls (docs/locustfiles.md).

Each call streams one sample to the next target of the current test, records the session (run directory or
master) and fires Locust's request events for every metric, so Locust's own tables and charts show them too.
"""

from __future__ import annotations

import random
from dataclasses import replace

import gevent

from ..conversation import draw_conversation
from ..metricdefs import METRICS, Source
from ..metrics import Outcome, SessionResult
from ..session import SessionCancelled, run_session
from .recorder import Recorder

REQUEST_TYPE = "STT"
LOCUST_METRICS = tuple(m for m in METRICS if m.locust)


class SessionFailed(Exception):
    """The failure Locust shows for a session: its outcome, then what happened."""


class SttClient:
    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self._fire = recorder.environment.events.request.fire

    def stream(self, sample: str | None = None, rng: random.Random | None = None,
               due: float | None = None) -> SessionResult:
        """One session of the current test: `sample` by its manifest name (among --samples), or else one drawn by
        weight (a conversation's turns with --conversation). `due`: the open loop's due time (perf_counter).
        Never raises for server behaviour (the result's outcome says what happened); a stopped test cancels it
        (recorded as cancelled, then SessionCancelled propagates, as Locust's stop expects)."""
        plan = self._recorder.plan
        rng = rng or random.Random()
        if sample is not None:
            clip = plan.corpus.named(sample)[1]
        elif plan.conversation is not None:  # samples drawn per turn
            clip = draw_conversation(plan.conversation, lambda r: plan.corpus.pick(r)[1], rng)
        else:
            clip = plan.corpus.pick(rng)[1]
        cfg = replace(plan.session_cfg, url=self._recorder.next_target())
        try:
            result = run_session(cfg, clip, due=due)
        except SessionCancelled as cancelled:
            self._report(cancelled.result)
            raise
        self._report(result)
        return result

    def _report(self, result: SessionResult) -> None:
        # Sessions that started together end together; yielding between the steps of this bookkeeping lets the
        # hub's pacing timer run in between, so a burst of endings does not delay every stream's next frame.
        gevent.sleep(0)
        self._recorder.record(result)
        gevent.sleep(0)
        fire = self._fire
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
