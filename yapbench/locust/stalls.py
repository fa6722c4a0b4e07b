"""Three of Locust's own costs and traps around a process's hub, and Python's garbage collector: measured, and taken
away.

While the hub is held, every stream in the process sends its next frames late by that much.

- **Each spawn message on a worker** (one a second while users start) keeps only the options that are not
  Locust's defaults with `{k: v for k, v in options.items() if k not in default_args_dict()}`, and
  `default_args_dict()` builds and runs a complete argument parser: once per option, some 80 parsers per message.
  py-spy on a worker ramping 100 users/s: 70 % of its samples, stalls of 0.3-0.9 s on the 2-vCPU VM, 130 ms send
  lag p99 over the ramp on the 16-core host. The defaults never change within a process, so they are built once.
- **Every stop** (the end of each run, each worker's drain): `Runner.stop()` names its caller in a debug line with
  `inspect.getframeinfo(inspect.stack()[1][0])`; `inspect.stack()` reads source context for every frame and
  searches sys.modules for each (CPython issue 92041): 0.3-0.7 s measured with yapbench loaded. `locust.runners`
  gets an `inspect` that walks frames without reading any source; the debug line keeps the caller's file and line.
- **The run-time limit firing at once**: headless Locust arms `-t` with `gevent.spawn_later(run_time, ...)`, and
  libev counts a new timer from the loop's cached clock, last read when the hub last ran. yapbench's `init`
  decodes the corpus without yielding (seconds on a busy 2-core machine), so a `-t 4s` run measured from a clock
  several seconds old stopped 30 ms after it started, before any session. The clock is read afresh once `init`
  is done (`settle_after_init`, the last step of the package's setup).
- **Full garbage collections.** CPython's cyclic collector now and then walks every tracked object of the process
  (generation 2), modules, Locust and the decoded corpus included, with the hub held: 58-77 ms of CPU per full
  collection at 800 streams on the busy 2-vCPU VM, one or two a minute. Everything that exists once `init` is done
  lives as long as the process, so it is moved out of the collector's sight (`gc.freeze()`, what Locust's
  `--processes` already does before it forks its workers; a plain `--worker` or a standalone process never did):
  a full collection then walks only the objects of the streams in flight (31-38 ms there).
"""

from __future__ import annotations

import functools
import gc
import inspect
import sys
from types import FrameType, SimpleNamespace

import gevent
import locust.argument_parser
import locust.runners

_locust_default_args = functools.cache(locust.argument_parser.default_args_dict)


def _default_args_dict() -> dict:
    return dict(_locust_default_args())  # a copy: callers may change what they get


def _stack() -> list[tuple[FrameType]]:
    # [0] is the frame that called stack(), [1] its caller: all Runner.stop() looks at.
    return [(sys._getframe(1),), (sys._getframe(2),)]


def _frameinfo(frame: FrameType) -> inspect.Traceback:
    return inspect.Traceback(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name, None, None)


locust.argument_parser.default_args_dict = _default_args_dict
locust.runners.inspect = SimpleNamespace(stack=_stack, getframeinfo=_frameinfo)  # type: ignore[attr-defined,assignment]


def settle_after_init() -> None:
    """The last step of yapbench's setup: nothing that exists by then is collected again, and the loop's clock is
    read afresh."""
    gc.collect()  # (garbage is not frozen: collected first)
    gc.freeze()
    gevent.get_hub().loop.update_now()  # last: the collection above takes time too
