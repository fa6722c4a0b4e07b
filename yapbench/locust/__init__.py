"""yapbench's Locust layer: options, the abstract user, records, the STT web UI tab, load shapes, end-of-run.

Importing this package registers its event listeners; `locustfiles/stt.py` declares the concrete users.
"""

from . import arrival, exporter, finish, options, recorder, shapes, telemetry, webui  # noqa: F401  (listeners register on import)
from . import stalls  # noqa: F401,E402  (last: its init listener reads the loop's clock after every other one)
from .shapes import RampShape, SpikeShape, StepShape
from .user import SttUser

__all__ = ["SttUser", "RampShape", "StepShape", "SpikeShape"]
