"""Open-loop arrivals: when sessions are due, independent of when earlier ones end; and the Erlang B reference.

One schedule for the whole load at `rate` sessions per second, split over `workers` processes without synchronised
bursts (docs/open-loop.md):

- poisson: each worker draws its own Poisson process of rate R/W (exponential gaps, its own random stream). The
  superposition of independent Poisson processes is exactly a Poisson process of rate R.
- constant: one arrival every 1/R seconds overall; worker i takes arrivals i, i+W, i+2W, ... of that one grid,
  so the workers interleave at offset phases instead of all firing at once.

Free of Locust and I/O: the Locust clock (yapbench/locust/arrival.py), the tests and the summary use it as is.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Iterator

ARRIVAL_PROCESSES = ("poisson", "constant")


@dataclass(frozen=True)
class ArrivalPlan:
    """One worker's share of the global schedule."""

    rate: float  # sessions per second, all workers together
    process: str = "poisson"
    workers: int = 1
    index: int = 0  # this worker's place among them, 0 .. workers-1

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"arrival rate must be a positive number of sessions per second, got {self.rate}")
        if self.process not in ARRIVAL_PROCESSES:
            raise ValueError(f"arrival process must be one of {', '.join(ARRIVAL_PROCESSES)}, got {self.process!r}")
        if self.workers < 1 or not 0 <= self.index < self.workers:
            raise ValueError(f"worker {self.index} of {self.workers}: need 0 <= index < workers")

    def offsets(self, seed: int | None = None) -> Iterator[float]:
        """Seconds after the schedule's start at which this worker's sessions are due (increasing, unbounded)."""
        if self.process == "constant":
            k = 0
            while True:  # computed from k, not accumulated: no drift over a long run
                yield (self.index + k * self.workers) / self.rate
                k += 1
        rng = random.Random(seed)
        share = self.rate / self.workers
        t = 0.0
        while True:
            t += rng.expovariate(share)
            yield t


def erlang_b(servers: int, offered_erlangs: float) -> float:
    """Probability that an arrival finds all `servers` busy, for Poisson arrivals offering `offered_erlangs`
    (any holding-time distribution). The stable recursion B(n) = A B(n-1) / (n + A B(n-1)), B(0) = 1."""
    if servers < 0 or offered_erlangs < 0:
        raise ValueError("need servers >= 0 and offered load >= 0")
    b = 1.0
    for n in range(1, servers + 1):
        b = offered_erlangs * b / (n + offered_erlangs * b)
    return b
