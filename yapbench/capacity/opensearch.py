"""The open-model capacity search, free of Locust and I/O: which arrival rate to try next, and the answer.

Method (docs/capacity.md, "Open model"): multiply the arrival rate by `factor` from `start_rate` while every SLO
holds (blocking and goodput targets, or any summary condition); at the first rate that breaks one, bisect between
the last good and the first bad rate until they are `resolution` (relative) apart. A level where the generator
dropped arrivals or lost its pacing judged the generator, not the server: the search stops there and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ..metricdefs import GENERATOR_LAG_LIMIT_MS
from ..slo import Condition

OPEN_SLOS = ("blocking<=1%",)  # the open model's default target; with --goodput also:
OPEN_GOODPUT_SLO = "goodput>=0.99"


@dataclass(frozen=True)
class OpenSpec:
    slos: tuple[str, ...]
    start_rate: float = 1.0
    factor: float = 2.0
    max_rate: float = 1000.0
    resolution: float = 0.1  # stop when (bad - good) / good <= this
    settle_s: float = 10.0
    measure_s: float = 30.0
    generator_limit_ms: float = GENERATOR_LAG_LIMIT_MS  # --generator-limit: a rate above it judged the generator

    def __post_init__(self) -> None:
        if self.generator_limit_ms <= 0:
            raise ValueError("--generator-limit must be > 0 ms")
        if not 0 < self.start_rate <= self.max_rate:
            raise ValueError("need 0 < --start-rate <= --max-rate")
        if self.factor <= 1 or not 0 < self.resolution < 1:
            raise ValueError("need --factor > 1 and 0 < --rate-resolution < 1")
        if self.settle_s < 0 or self.measure_s <= 0:
            raise ValueError("need --settle >= 0 and --window > 0")


@dataclass
class RateLevel:
    rate: float  # configured sessions/s
    broken: list[str]
    values: dict[str, float | None] = field(default_factory=dict)  # the SLO metrics, by path
    traffic: dict[str, float | None] = field(default_factory=dict)  # offered/carried Erlangs, blocking, Erlang B, ...
    dropped: int = 0
    send_lag_p99_ms: float | None = None
    generator_limit_ms: float = GENERATOR_LAG_LIMIT_MS

    @property
    def generator_bound(self) -> bool:
        return self.dropped > 0 or (self.send_lag_p99_ms is not None and self.send_lag_p99_ms > self.generator_limit_ms)

    @property
    def passed(self) -> bool:
        return not self.broken and not self.generator_bound

    def as_dict(self) -> dict:
        return {"rate": self.rate, "passed": self.passed, "broken": self.broken, "values": self.values,
                "traffic": self.traffic, "dropped": self.dropped, "send_lag_p99_ms": self.send_lag_p99_ms,
                "generator_bound": self.generator_bound}


TRAFFIC_KEYS = ("measured_arrival_rate", "offered_erlangs", "carried_erlangs", "holding_s", "blocking", "erlang_b",
                "slots", "goodput", "attempts")


def evaluate_rate(rate: float, summary: dict, conditions: Sequence[Condition],
                  generator_limit_ms: float = GENERATOR_LAG_LIMIT_MS) -> RateLevel:
    checks = [c.check(summary) for c in conditions]
    return RateLevel(
        rate=rate,
        broken=[str(r.condition) for r in checks if not r.passed],
        values={str(c.path): r.value for c, r in zip(conditions, checks)},
        traffic={k: summary.get(k) for k in TRAFFIC_KEYS},
        dropped=int((summary.get("outcomes") or {}).get("dropped", 0)),
        send_lag_p99_ms=(summary.get("send_lag") or {}).get("p99"),
        generator_limit_ms=generator_limit_ms,
    )


class RateSearch:
    """Decides the rates; `record(level)` returns the next rate, or None when the search is over."""

    def __init__(self, spec: OpenSpec) -> None:
        self.spec = spec
        self.levels: list[RateLevel] = []
        self.good: RateLevel | None = None
        self.bad: RateLevel | None = None
        self.limit = ""  # slo, generator, max_rate, first_level

    def record(self, level: RateLevel) -> float | None:
        self.levels.append(level)
        if level.passed and (self.good is None or level.rate > self.good.rate):
            self.good = level
        if not level.passed and (self.bad is None or level.rate < self.bad.rate):
            self.bad = level
        if level.generator_bound:
            self.limit = "generator"
            return None
        if self.bad is None:
            if level.rate >= self.spec.max_rate:
                self.limit = "max_rate"
                return None
            return min(self.spec.max_rate, level.rate * self.spec.factor)
        if self.good is None:
            self.limit = "first_level"
            return None
        if self.bad.rate - self.good.rate <= self.spec.resolution * self.good.rate:
            self.limit = "slo"
            return None
        return (self.good.rate + self.bad.rate) / 2

    def answer(self) -> dict:
        good, bad = self.good, self.bad
        return {
            "model": "open",
            "capacity_rate": good.rate if good else None,
            "capacity_erlangs": good.traffic.get("offered_erlangs") if good else None,
            "limit": self.limit,
            "generator_limit_ms": self.spec.generator_limit_ms,
            "resolution": self.spec.resolution,
            "first_bad_rate": bad.rate if bad else None,
            "broken_first": (bad.broken or (["generator"] if bad.generator_bound else [])) if bad else [],
            "levels": [lv.as_dict() for lv in sorted(self.levels, key=lambda lv: lv.rate)],
            "slos": list(self.spec.slos),
        }


def open_answer_line(answer: dict) -> str:
    rate, erl, bad = answer["capacity_rate"], answer["capacity_erlangs"], answer["first_bad_rate"]
    broke = ", ".join(answer["broken_first"]) or "nothing"
    if answer["limit"] == "generator":
        return (f"capacity: the load generator was the limit at {bad:g} sessions/s (arrivals dropped or send lag "
                f"p99 > {answer.get('generator_limit_ms', GENERATOR_LAG_LIMIT_MS):g} ms), not the server; raise -u or "
                "add workers. "
                f"Last rate held: {_rate(rate, erl)}")
    if rate is None:
        return f"capacity: even the first rate ({bad:g} sessions/s) broke: {broke}"
    if answer["limit"] == "max_rate":
        return f"capacity: at least {_rate(rate, erl)}: every SLO held up to --max-rate"
    return (f"capacity: {_rate(rate, erl)} hold every SLO (resolution {answer['resolution']:.0%}); "
            f"at {bad:g} sessions/s: {broke}")


def _rate(rate: float | None, erlangs: float | None) -> str:
    if rate is None:
        return "none"
    erl = "?" if erlangs is None else f"{erlangs:.3g}"
    return f"{rate:g} sessions/s ({erl} Erlangs offered)"
