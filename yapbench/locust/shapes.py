"""Load shapes, chosen with --shape: at init for the command line, at each start from the web UI's form (webui.py).

Locust runs a shape instead of -u/-r when `environment.shape_class` is set as a test starts.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from locust import LoadTestShape
from locust.env import Environment

from ..errors import UserError
from .recorder import Recorder


class TimedShape(LoadTestShape):
    """A shape that runs `duration_s` seconds to `peak` users; subclasses say how many users at time t."""

    abstract = True
    use_common_options = True  # -u and -t are its peak and duration: the web UI's form keeps those fields

    def __init__(self, peak: int, duration_s: float) -> None:
        super().__init__()
        self.peak, self.duration_s = peak, duration_s

    def users_at(self, t: float) -> tuple[int, float]:
        raise NotImplementedError

    def tick(self):
        t = self.get_run_time()
        return None if t >= self.duration_s else self.users_at(t)


class RampShape(TimedShape):
    """0 to `peak` users linearly over the run time, then stop."""

    def users_at(self, t: float) -> tuple[int, float]:
        return math.ceil(self.peak * t / self.duration_s), max(1.0, self.peak / self.duration_s)


class StepShape(TimedShape):
    """`step` more users every `step_s` seconds up to `peak`, holding each level a full step, then stop."""

    def __init__(self, peak: int, step: int, step_s: float, duration_s: float | None = None) -> None:
        super().__init__(peak, duration_s if duration_s else math.ceil(peak / step) * step_s)
        self.step, self.step_s = step, step_s

    def users_at(self, t: float) -> tuple[int, float]:
        return min(self.peak, self.step * (int(t // self.step_s) + 1)), float(self.step)


class SpikeShape(TimedShape):
    """A tenth of `peak` users, then `peak` in the middle third of the run time, then back: recovery from a burst."""

    def users_at(self, t: float) -> tuple[int, float]:
        in_spike = self.duration_s / 3 <= t < 2 * self.duration_s / 3
        return (self.peak if in_spike else max(1, self.peak // 10)), float(self.peak)


def shape_from_options(opts: Any, run_dir: Path | None) -> LoadTestShape | None:
    """The shape `opts` ask for (None: -u users at -r per second); `run_dir` is the test's (capacity writes there)."""
    kind = getattr(opts, "shape", "none")
    if kind == "none":
        return None
    if kind == "capacity":
        if not opts.capacity_spec or run_dir is None:
            raise UserError("--shape capacity needs --capacity-spec (use `yapbench capacity`), on the master")
        from ..capacity.shape import CapacityShape

        return CapacityShape.from_spec_file(Path(opts.capacity_spec), run_dir, opts.spawn_rate or 10.0)
    peak = opts.num_users or 1
    duration = float(opts.run_time) if opts.run_time else None
    if kind == "steps":
        if opts.step_users < 1 or opts.step_time <= 0:
            raise UserError("--shape steps needs --step-users >= 1 and --step-time > 0")
        return StepShape(peak, opts.step_users, opts.step_time, duration)
    if duration is None:
        raise UserError(f"--shape {kind} needs a run time (-t)")
    return RampShape(peak, duration) if kind == "ramp" else SpikeShape(peak, duration)


def use_shape(environment: Environment, shape: LoadTestShape | None) -> None:
    """Make `shape` the one Locust runs from the next start (None: none)."""
    if shape is not None:
        shape.runner = environment.runner
    environment.shape_class = shape


def install(environment: Environment, rec: Recorder) -> None:
    """The command line's shape, on the master or a standalone process (a locustfile's own shape wins)."""
    if rec.is_worker or environment.shape_class is not None:
        return
    # The first test's run directory: capacity's search writes its answer there.
    use_shape(environment, shape_from_options(environment.parsed_options, rec.history.next_dir(rec.opts.run_dir)))
