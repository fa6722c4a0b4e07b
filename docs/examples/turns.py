"""A locustfile of your own: a caller who speaks one utterance, then listens while the other side answers.

    locust -f docs/examples/turns.py --host ws://gpu-host:8000 --samples mid.wav

Every yapbench option, the STT tab, the run directory and the report work as with locustfiles/stt.py: importing
yapbench.locust sets them up. Only the scenario is yours: `self.client.stream(name)` streams one sample (a manifest
name among --samples; without a name, one drawn by weight), records it and returns its SessionResult.
"""

from locust import between, task

from yapbench.locust import StreamingUser


class TurnTaking(StreamingUser):
    """One turn: stream mid.wav at the configured speed, then wait 2 to 4 s for the next turn."""

    wait_time = between(2, 4)

    @task
    def turn(self) -> None:
        self.client.stream("mid.wav")
