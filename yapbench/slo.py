"""The condition language shared by the gates and the capacity finder: `PATH OP VALUE[UNIT]`.

    first_word.p95 <= 1000ms      backlog.p99<=160ms      rejection_rate<=1%      wer < 0.3      outcomes.ok >= 100

PATH is a dotted path into summary.json (docs/report.md). Metric names may carry their sessions.jsonl `_ms`
suffix (`first_word_ms.p95`), and `backlog` means `backlog_max`. OP is one of <=, <, >=, >, ==. UNIT is `ms` or
`s` for times (a bare number is milliseconds), `%` for fractions (rates, WER: a bare number is a fraction, 0.01 =
1%), and nothing for counts. Paths are checked against the summary's schema when parsed, so a typo fails before
a load starts, not after.

A condition whose value the run did not observe (no first word in an all-rejected run, no Step messages for
backlog) fails with "no data": a gate that passes because nothing was measured would hide exactly the runs that
need a look.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from enum import StrEnum

from .errors import UserError
from .report.schema import (ALIASES, DISTRIBUTIONS, GPU_FIELDS, OPS, OUTCOMES, RATES, SCALARS, STATS, TARGETS,
                            THROUGHPUT, TIME_METRICS, WER_BY_SAMPLE, WER_SAMPLE_FIELDS, number_at)

MIN_TAIL = 5  # values a percentile needs beyond it, on its shorter side, to be more than noise
_CONDITION = re.compile(r"^\s*(?P<path>[^<>=\s]+)\s*(?P<op><=|>=|==|<|>)\s*(?P<value>.+?)\s*$")
_VALUE = re.compile(r"^(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<unit>ms|s|%)?$")


class SloError(UserError):
    """A condition or metric path that cannot be understood; the message quotes it."""


class Kind(StrEnum):
    TIME = "time"  # milliseconds
    FRACTION = "fraction"  # 0..1, written with % or as a fraction
    NUMBER = "number"  # counts, rates per second, GPU readings: no unit


@dataclass(frozen=True)
class MetricPath:
    """A checked path into the summary, with the kind of number it names."""

    keys: tuple[str, ...]
    kind: Kind

    def __str__(self) -> str:
        return ".".join(self.keys)

    def value(self, summary: dict) -> float | None:
        """The number at this path, or None when the run did not observe it."""
        return number_at(summary, self.keys)

    @property
    def min_samples(self) -> int | None:
        """Values a percentile (`...p99`) needs before it says more than noise: MIN_TAIL of them beyond it on the
        shorter side (p99: 500, p95: 100, p50: 10). None for other numbers."""
        stat = self.keys[-1]
        if len(self.keys) < 2 or not (stat.startswith("p") and stat[1:].isdigit()):
            return None
        q = int(stat[1:]) / 100.0
        return math.ceil(MIN_TAIL / min(q, 1.0 - q) - 1e-9)

    def count(self, summary: dict) -> float | None:
        """How many values the statistic at this path was computed from, when the summary says."""
        return number_at(summary, (*self.keys[:-1], "count")) if len(self.keys) >= 2 else None

    def too_few(self, summary: dict) -> str | None:
        """Why this percentile cannot be judged in `summary` (too few values), or None when it can."""
        need, count = self.min_samples, self.count(summary)
        if need is None or not count or count >= need:
            return None
        return (f"too few values for {self.keys[-1]}: {int(count)}, it needs >= {need} "
                f"({MIN_TAIL} beyond the percentile)")

    def format(self, v: float | None) -> str:
        if v is None:
            return "no data"
        if self.kind is Kind.TIME:
            return f"{v:.1f} ms"
        if self.kind is Kind.FRACTION:
            return f"{100 * v:.3g}%"
        return f"{v:.6g}"


@dataclass(frozen=True)
class Condition:
    text: str  # as written, for messages
    path: MetricPath
    op: str
    limit: float  # in the summary's units (ms, fraction, count)

    def __str__(self) -> str:
        return f"{self.path} {self.op} {self.path.format(self.limit)}"

    def check(self, summary: dict) -> CheckResult:
        v = self.path.value(summary)
        return CheckResult(self, v, v is not None and OPS[self.op](v, self.limit))


@dataclass(frozen=True)
class CheckResult:
    condition: Condition
    value: float | None
    passed: bool

    def __str__(self) -> str:
        verdict = "pass" if self.passed else "FAIL"
        return f"{self.condition}: {self.condition.path.format(self.value)} ({verdict})"


def parse_condition(text: str) -> Condition:
    path_text, op, value = split_condition(text, example="first_word.p95<=1000ms")
    path = parse_path(path_text, context=f"condition {text!r}")
    return Condition(text, path, op, parse_value(value, path.kind, context=f"condition {text!r}"))


def split_condition(text: str, example: str) -> tuple[str, str, str]:
    """PATH, OP and VALUE of a condition as written (the goodput objectives share this grammar)."""
    m = _CONDITION.match(text)
    if not m:
        raise SloError(f"condition {text!r}: expected PATH OP VALUE, e.g. '{example}' (OP one of {', '.join(OPS)})")
    return m["path"], m["op"], m["value"]


def parse_value(text: str | int | float, kind: Kind, context: str) -> float:
    """A limit in the summary's units: "1.2s" -> 1200.0 for times, "1%" -> 0.01 for fractions."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    m = _VALUE.match(str(text).strip())
    if not m:
        raise SloError(f"{context}: {text!r} is not a number with an optional unit (ms, s, %)")
    num, unit = float(m["num"]), m["unit"]
    allowed = {Kind.TIME: ("ms", "s"), Kind.FRACTION: ("%",), Kind.NUMBER: ()}[kind]
    if unit and unit not in allowed:
        hint = {Kind.TIME: "a time: use ms or s", Kind.FRACTION: "a fraction: use % or a bare number (0.01 = 1%)",
                Kind.NUMBER: "a plain number: no unit"}[kind]
        raise SloError(f"{context}: unit {unit!r} does not fit, the metric is {hint}")
    return num * {"s": 1000.0, "%": 0.01}.get(unit or "", 1.0)


def parse_path(text: str, context: str = "") -> MetricPath:
    """A summary path, aliases resolved and checked against the schema."""
    where = context or f"metric {text!r}"
    parts = text.strip().split(".")
    if parts[0] == TARGETS:
        # Target names are URLs with dots in them: the target is whatever leaves a valid path after it.
        for k in range(2, len(parts)):
            try:
                tail = _section_path(parts[k:], where)
            except SloError:
                continue
            return MetricPath((TARGETS, ".".join(parts[1:k]), *tail.keys), tail.kind)
        raise SloError(f"{where}: expected targets.<target>.<metric path>, e.g. targets.ws://host:8080.first_word.p95")
    if parts[0] == "gpu":
        if len(parts) != 3 or parts[1] not in GPU_FIELDS or parts[2] not in STATS:
            raise SloError(f"{where}: expected gpu.<{'|'.join(GPU_FIELDS)}>.<{'|'.join(STATS)}>")
        return MetricPath(tuple(parts), Kind.NUMBER)
    return _section_path(parts, where)


def _section_path(parts: list[str], where: str) -> MetricPath:
    """A path inside one section (the whole run, or one target)."""
    head = ALIASES.get(parts[0], parts[0])
    rest = parts[1:]
    if head in DISTRIBUTIONS:
        if len(rest) != 1 or rest[0] not in STATS:
            raise SloError(f"{where}: {parts[0]} needs one statistic, e.g. {head}.p95 (one of {', '.join(STATS)})")
        if rest[0] == "count":
            return MetricPath((head, "count"), Kind.NUMBER)
        return MetricPath((head, rest[0]), Kind.TIME if head in TIME_METRICS else Kind.FRACTION)
    if head in RATES or head in SCALARS:
        if rest:
            raise SloError(f"{where}: {head} is a single number, it takes no .{'.'.join(rest)}")
        return MetricPath((head,), Kind.FRACTION if head in RATES else Kind.NUMBER)
    if head == "outcomes":
        if len(rest) != 1 or rest[0] not in OUTCOMES:
            raise SloError(f"{where}: expected outcomes.<outcome>, outcome one of {', '.join(OUTCOMES)}")
        return MetricPath((head, rest[0]), Kind.NUMBER)
    if head == "throughput":
        if len(rest) != 1 or rest[0] not in THROUGHPUT:
            raise SloError(f"{where}: expected throughput.<{'|'.join(THROUGHPUT)}>")
        return MetricPath((head, rest[0]), Kind.NUMBER)
    if head == WER_BY_SAMPLE:
        if len(rest) < 2 or rest[-1] not in WER_SAMPLE_FIELDS:
            raise SloError(f"{where}: expected {WER_BY_SAMPLE}.<sample>.<{'|'.join(WER_SAMPLE_FIELDS)}>")
        kind = Kind.FRACTION if rest[-1] == "wer" else Kind.NUMBER
        return MetricPath((head, ".".join(rest[:-1]), rest[-1]), kind)
    known = sorted({*DISTRIBUTIONS, *RATES, *SCALARS, "outcomes", "throughput", WER_BY_SAMPLE, TARGETS, "gpu"})
    raise SloError(f"{where}: unknown metric {parts[0]!r} (known: {', '.join(known)})")

