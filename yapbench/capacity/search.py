"""The capacity search, free of Locust and I/O: which concurrency to try next, when a level is stable, the answer.

Method (docs/capacity.md): step concurrency up geometrically from --start until an SLO breaks, rejections begin
or the generator saturates; then bisect between the last good and the first bad level down to --resolution.
Each level is held until its SLO metrics are stable: the last `stable_windows` windows agree within `tolerance`
(relative to their mean), as Triton's perf_analyzer does, or `max_windows` have passed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from ..metricdefs import GENERATOR_LAG_LIMIT_MS
from ..slo import CheckResult, Condition


@dataclass(frozen=True)
class SearchSpec:
    slos: tuple[str, ...]
    start: int = 4
    factor: float = 2.0
    max_users: int = 1024
    resolution: int = 2
    window_s: float = 10.0
    settle_s: float = 10.0  # ignored time after a level change (sessions of the old level drain)
    stable_windows: int = 3
    tolerance: float = 0.10
    max_windows: int = 6
    stop_on_rejection: bool = True
    conversation: str = ""  # --conversation as typed: each user holds a conversation, the answer is in those
    beside: dict | None = None  # --beside: another capacity run's answer on the same server, shown with this one
    generator_limit_ms: float = GENERATOR_LAG_LIMIT_MS  # --generator-limit: a level above it judged the generator

    def __post_init__(self) -> None:
        if self.generator_limit_ms <= 0:
            raise ValueError("--generator-limit must be > 0 ms")
        if self.start < 1 or self.max_users < self.start:
            raise ValueError("need 1 <= --start <= --max-users")
        if self.factor <= 1:
            raise ValueError("--factor must be > 1")
        if self.resolution < 1:
            raise ValueError("--resolution must be >= 1")
        if self.window_s <= 0 or self.stable_windows < 1 or self.max_windows < self.stable_windows:
            raise ValueError("need --window > 0 and 1 <= --stable-windows <= --max-windows")


@dataclass
class LevelResult:
    users: int
    checks: list[CheckResult]
    rejection_rate: float
    send_lag_p99_ms: float | None
    windows: int
    stable: bool
    sessions: int
    values: dict[str, float | None] = field(default_factory=dict)
    per_target: dict[str, dict] = field(default_factory=dict)  # fleets: each target's streams and verdict
    speech_share: float | None = None  # conversations: the share of a slot's time that carried speech
    generator_limit_ms: float = GENERATOR_LAG_LIMIT_MS

    @property
    def generator_bound(self) -> bool:
        return self.send_lag_p99_ms is not None and self.send_lag_p99_ms > self.generator_limit_ms

    @property
    def broken(self) -> list[str]:
        return [str(c.condition) for c in self.checks if not c.passed]

    def passed(self, stop_on_rejection: bool) -> bool:
        return not self.broken and not (stop_on_rejection and self.rejection_rate > 0) and not self.generator_bound

    def as_dict(self, stop_on_rejection: bool) -> dict:
        return {
            "users": self.users,
            "passed": self.passed(stop_on_rejection),
            "broken": self.broken,
            "rejection_rate": self.rejection_rate,
            "send_lag_p99_ms": self.send_lag_p99_ms,
            "generator_bound": self.generator_bound,
            "windows": self.windows,
            "stable": self.stable,
            "sessions": self.sessions,
            "values": self.values,
            "per_target": self.per_target,
            "speech_share": self.speech_share,
        }


def is_stable(series: Sequence[Sequence[float | None]], n: int, tolerance: float) -> bool:
    """True when, for every metric, the last n windows' values lie within `tolerance` of their mean."""
    if len(series) < n:
        return False
    for values in zip(*series[-n:]):
        if any(v is None for v in values):
            return False
        mean = sum(values) / n
        spread = max(values) - min(values)
        if spread > tolerance * abs(mean) and spread > 1e-9:
            return False
    return True


class CapacitySearch:
    """Decides the levels; `record(level)` returns the next concurrency, or None when the search is over."""

    def __init__(self, spec: SearchSpec) -> None:
        self.spec = spec
        self.levels: list[LevelResult] = []
        self.good: LevelResult | None = None
        self.bad: LevelResult | None = None
        self.limit = ""  # what ended the search: slo, rejections, generator, max_users, first_level

    @property
    def first_level(self) -> int:
        return self.spec.start

    def record(self, level: LevelResult) -> int | None:
        self.levels.append(level)
        ok = level.passed(self.spec.stop_on_rejection)
        if ok and (self.good is None or level.users > self.good.users):
            self.good = level
        if not ok and (self.bad is None or level.users < self.bad.users):
            self.bad = level
        if level.generator_bound:
            # The generator, not the server, stopped keeping time: no level above this can be trusted.
            self.limit = "generator"
            return None
        if self.bad is None:
            if level.users >= self.spec.max_users:
                self.limit = "max_users"
                return None
            return min(self.spec.max_users, max(level.users + 1, math.ceil(level.users * self.spec.factor)))
        if self.good is None:
            self.limit = "first_level"
            return None
        if self.bad.users - self.good.users <= self.spec.resolution:
            self.limit = "rejections" if self.bad.rejection_rate > 0 and not self.bad.broken else "slo"
            return None
        return (self.good.users + self.bad.users) // 2

    def per_target(self) -> dict[str, dict]:
        """For a fleet: the most streams each target carried at a level where it held every SLO itself."""
        out: dict[str, dict] = {}
        for lv in self.levels:
            for url, t in lv.per_target.items():
                row = out.setdefault(url, {"capacity_streams": None, "broken_first": []})
                if t["passed"] and (row["capacity_streams"] is None or t["streams"] > row["capacity_streams"]):
                    row["capacity_streams"] = t["streams"]
        for url, row in out.items():
            above = [lv.per_target[url] for lv in sorted(self.levels, key=lambda lv: lv.users)
                     if url in lv.per_target and not lv.per_target[url]["passed"]
                     and lv.per_target[url]["streams"] > (row["capacity_streams"] or 0)]
            row["broken_first"] = above[0]["broken"] if above else []
        return out

    def answer(self) -> dict:
        bad, good = self.bad, self.good
        return {
            "capacity": good.users if good else None,
            # Conversations: each user holds one slot through its pauses; the streams of speech it adds up to are
            # the conversations times the share of the time they spoke (Little's law on the speech alone).
            "conversation": self.spec.conversation or None,
            "speech_share": good.speech_share if good and self.spec.conversation else None,
            "speech_streams": (round(good.users * good.speech_share, 1)
                               if good and self.spec.conversation and good.speech_share is not None else None),
            "limit": self.limit,
            "generator_limit_ms": self.spec.generator_limit_ms,
            "resolution": self.spec.resolution,
            "first_bad_users": bad.users if bad else None,
            "broken_first": (bad.broken or (["rejections"] if bad.rejection_rate > 0 else [])) if bad else [],
            "levels": [lv.as_dict(self.spec.stop_on_rejection) for lv in sorted(self.levels, key=lambda lv: lv.users)],
            "slos": list(self.spec.slos),
            "per_target": self.per_target(),
            "beside": self.spec.beside,
        }


def evaluate_level(users: int, summary: dict, conditions: Sequence[Condition], windows: int, stable: bool,
                   generator_limit_ms: float = GENERATOR_LAG_LIMIT_MS) -> LevelResult:
    checks = [c.check(summary) for c in conditions]
    speed = float((summary.get("run") or {}).get("speed") or 1.0)
    per_target = {}
    for url, sub in (summary.get("targets") or {}).items():
        sub_checks = [c.check(sub) for c in conditions]
        rejected = float(sub.get("rejection_rate") or 0.0) > 0
        per_target[url] = {
            # Streams this target carried, by Little's law: seconds of audio served per wall second / speed.
            "streams": round(float((sub.get("throughput") or {}).get("audio_s_per_s") or 0.0) / speed, 1),
            "passed": all(r.passed for r in sub_checks) and not rejected,
            "broken": [str(r.condition) for r in sub_checks if not r.passed] + (["rejections"] if rejected else []),
        }
    return LevelResult(
        users=users,
        checks=checks,
        rejection_rate=float(summary.get("rejection_rate") or 0.0),
        send_lag_p99_ms=summary.get("send_lag", {}).get("p99"),
        windows=windows,
        stable=stable,
        sessions=int(summary.get("sessions") or 0),
        values={str(c.path): r.value for c, r in zip(conditions, checks)},
        per_target=per_target,
        speech_share=summary.get("speech_share"),
        generator_limit_ms=generator_limit_ms,
    )
