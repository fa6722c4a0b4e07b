"""The Locust users: `StreamingUser` holds the session runner as `self.client` and declares no task (as HttpUser
holds an HTTP session); `SttUser` is yapbench's scenario on it: one streaming session per task, backing off when
the server has no slot for it, or one session per arrival in the open loop.

Shaped like Locust's own protocol integrations (locust/contrib): the client (client.py) records and fires
`events.request`, the abstract users own it, the locustfile declares the concrete user. A locustfile writes its
own scenario as a StreamingUser with tasks around `self.client.stream(...)` (docs/locustfiles.md).
"""

from __future__ import annotations

import logging
import random

import gevent
from locust import User, task

from ..metrics import NOT_SERVED, Outcome, SessionResult
from .arrival import clock_for
from .client import SttClient

log = logging.getLogger("yapbench")
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
# Locust hands a process each second's new users all at once (its dispatcher adds floor(rate) users per ~1 s tick).
# Started together, their upgrades would land in the same few milliseconds of the hub and delay every running
# stream's next frame; each new user instead starts its first session at a random point of that second.
START_SPREAD_S = 1.0


class SetupMissing(RuntimeError):
    """A yapbench user in a Locust environment that yapbench did not set up."""


class StreamingUser(User):
    """A user with an STT session runner as `self.client`; backs off (its wait_time) when it is not served."""

    abstract = True

    def __init__(self, environment) -> None:
        super().__init__(environment)
        recorder = getattr(environment, "yapbench", None)
        if recorder is None:
            raise SetupMissing(
                f"{type(self).__name__} needs yapbench's options and setup, which this Locust environment lacks: "
                "run it with `locust -f LOCUSTFILE` where LOCUSTFILE imports yapbench.locust (as locustfiles/stt.py "
                "does), or, for library use, call yapbench.locust.setup(environment) once its parsed_options hold "
                "yapbench's options")
        self.recorder = recorder
        self.client = SttClient(recorder)
        self.rng = random.Random()
        self.failures_in_a_row = 0

    def wait_time(self) -> float:
        if self.failures_in_a_row:
            # Full jitter (uniform 0..cap): rejected users spread out instead of returning together.
            return self.rng.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** self.failures_in_a_row))
        think = self.environment.parsed_options.think_time
        return self.rng.uniform(0.5 * think, 1.5 * think)

    def count_failures(self, result: SessionResult) -> None:
        """Backoff state: not served in a row (rejected, refused, unauthorised) until a session is served."""
        self.failures_in_a_row = self.failures_in_a_row + 1 if result.outcome in NOT_SERVED else 0
        if result.outcome == Outcome.AUTH_FAILED and self.failures_in_a_row == 1:
            log.error("yapbench: %s: %s (set $KYUTAI_API_KEY or --api-key-file)", result.target, result.error)


class SttUser(StreamingUser):
    """Streams paced speech to the server, one session per task; backs off when the server has no slot for it."""

    abstract = True

    def on_start(self) -> None:
        if clock_for(self.environment) is None:  # (open loop: the arrival clock spreads the starts)
            gevent.sleep(self.rng.uniform(0.0, START_SPREAD_S))

    def wait_time(self) -> float:
        if clock_for(self.environment) is not None:
            return 0.0  # open loop: the arrival clock paces sessions; no think time, no backoff
        return super().wait_time()

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
        self.count_failures(self.client.stream(rng=self.rng, due=due))
