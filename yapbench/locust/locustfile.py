"""The locustfile yapbench ships (locustfiles/stt.py in the repository re-exports it; `yapbench run` uses it).

The logic lives in yapbench.locust; this file only declares the concrete users (the shape of Locust's own
protocol integrations). Options: `locust -f locustfiles/stt.py --help`, section "Custom arguments".
"""

from yapbench.locust import SttUser


class SpeechStream(SttUser):
    """A caller streaming recorded speech in real time (or at --speed), then flushing and hanging up."""
