"""`locust -f locustfiles/stt.py --host ws://HOST:PORT` (web UI), or add --headless for CI.

The users are declared in yapbench/locust/locustfile.py (the file `yapbench run` uses too).
"""

from yapbench.locust.locustfile import SpeechStream  # noqa: F401
