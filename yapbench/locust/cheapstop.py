"""Stopping without a stall: Locust's `Runner.stop()` builds its caller's name for one debug line with
`inspect.getframeinfo(inspect.stack()[1][0])`, and `inspect.stack()` reads source context for every frame of the
stack and searches sys.modules for each (CPython issue 92041): 0.3-0.7 s measured on the 2-vCPU VM with
yapbench loaded. The hub is held all that time, so every stream in the process sends its next frames that late, at
every stop (the end of every run, each worker's drain). Here `locust.runners` gets an `inspect` whose `stack()` and
`getframeinfo()` walk frames without reading any source; the debug line keeps the caller's file and line.
"""

from __future__ import annotations

import inspect
import sys
from types import FrameType, SimpleNamespace

import locust.runners


def _stack() -> list[tuple[FrameType]]:
    # [0] is the frame that called stack(), [1] its caller: all Runner.stop() looks at.
    return [(sys._getframe(1),), (sys._getframe(2),)]


def _frameinfo(frame: FrameType) -> inspect.Traceback:
    return inspect.Traceback(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name, None, None)


locust.runners.inspect = SimpleNamespace(stack=_stack, getframeinfo=_frameinfo)  # type: ignore[attr-defined]
