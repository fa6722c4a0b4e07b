"""The phases of a run: ramp (users starting, then a settle time), steady state, drain (after the load stopped).

Light (no pandas): the recorder and the option parsers import its names. The headline figures of summary.json
(report/summary.py) are the steady state's: a ramp makes the generator start hundreds of sessions
a second and the server fill its batch, neither of which is the load being measured (docs/metrics.md). Each phase
also gets its own summary, and a generator that lagged (send lag > 10 ms) is reported per phase with the share of
frames it made late.

The boundaries come from run.json: `started_at`, `spawning_complete_at` (the last time Locust reported all users
started), `stopping_at` (the load's time was up) and `ended_at`. Runs with a shape (ramp, steps, spike, capacity)
change their user count by design and have no single ramp: their whole run is the window, as for a run directory
without those times (written before they were recorded, or killed during the ramp).
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the recorder imports the keys below: pandas loads only when a summary is computed
    from .load import RunData

DEFAULT_SETTLE_S = 10.0  # after the last user started: sessions of the ramp finish, the server's batch settles
SETTLE_KEY = "settle_s"  # run.json: the --settle the load was run with
SPAWNING_COMPLETE_KEY = "spawning_complete_at"  # run.json: epoch seconds when all users had started (the last time)
STOPPING_KEY = "stopping_at"  # run.json: epoch seconds when the load's time was up


@dataclass(frozen=True)
class Phase:
    name: str  # "ramp", "steady" or "drain"
    start: float  # epoch seconds
    end: float


def phases_of(run: RunData, settle_s: float) -> list[Phase]:
    """The run's phases, empty when it has no single ramp (a shape, or times not recorded)."""
    meta = run.meta
    spawned, stopping = _float(meta.get(SPAWNING_COMPLETE_KEY)), _float(meta.get(STOPPING_KEY))
    if spawned is None or meta.get("shape") not in (None, "", "none"):
        return []
    stop = min(stopping if stopping is not None else run.end, run.end)
    steady_start = min(max(spawned + settle_s, run.start), stop)
    phases = [Phase("ramp", run.start, steady_start), Phase("steady", steady_start, stop),
              Phase("drain", stop, run.end)]
    return [p for p in phases if p.end > p.start or p.name == "steady"]


def settle_of(meta: dict, settle_s: float | None) -> float:
    """--settle of `yapbench report` when given, else the run's own (run.json), else the default."""
    if settle_s is not None:
        return settle_s
    recorded = _float(meta.get(SETTLE_KEY))
    return DEFAULT_SETTLE_S if recorded is None else recorded


def _float(v: object) -> float | None:
    """A number of run.json, None when absent or not a number."""
    if not isinstance(v, (int, float, str)):
        return None
    try:
        return float(v)
    except ValueError:
        return None
