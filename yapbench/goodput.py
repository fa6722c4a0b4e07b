"""Goodput objectives: what one session must achieve to count as good (`--goodput`).

    --goodput "first_word<=1000ms,word_lag.max<=2000ms,finalize<=500ms"

Comma-separated conditions in the gates' grammar (yapbench.slo: PATH OP VALUE, times in ms or s), but about one
session instead of the whole run: a session metric names that session's value (`first_word`, `finalize`,
`connect`, `ready`, `first_response`, `backlog`), a word metric takes a statistic over that session's words
(`word_lag.max`, `end_lag.p95`). A session is good when it was served to the end (outcome ok) and met every
objective; a value it never produced (no word came) fails, as "no data" fails a gate. The summary's `goodput` is
the share of decided attempts that were good (docs/open-loop.md). Free of pandas: the Locust process checks the
objectives at start and stores them in run.json as records (`goodput`); the report evaluates those
(report/openloop.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from .metricdefs import SESSION_METRICS, WORD_METRICS
from .report.schema import ALIASES
from .slo import Kind, SloError, parse_value, split_condition

WORD_STATS = ("min", "mean", "max", "p50", "p90", "p95", "p99")


@dataclass(frozen=True)
class Objective:
    text: str  # as written
    metric: str  # summary name: a SESSION_METRICS or WORD_METRICS key
    stat: str | None  # over the session's words; None for a session metric
    op: str
    limit_ms: float

    @property
    def column(self) -> str:
        """The sessions.jsonl / words.csv column the value comes from."""
        return SESSION_METRICS.get(self.metric) or WORD_METRICS[self.metric]

    def __str__(self) -> str:
        name = self.metric + (f".{self.stat}" if self.stat else "")
        return f"{name} {self.op} {self.limit_ms:g} ms"

    def record(self) -> dict:
        """As run.json stores it: the report evaluates these records without the condition language."""
        return {"text": self.text, "column": self.column, "stat": self.stat, "op": self.op, "limit_ms": self.limit_ms}


def parse_objectives(text: str) -> tuple[Objective, ...]:
    """`--goodput`'s value; an empty string is no objectives. Errors quote the objective and list the names."""
    return tuple(parse_objective(part) for part in text.split(",") if part.strip())


def parse_objective(text: str) -> Objective:
    path, op, value = split_condition(text, example="first_word<=1000ms")
    head, _, stat = path.partition(".")
    head = ALIASES.get(head, head)
    where = f"goodput objective {text.strip()!r}"
    if head in SESSION_METRICS:
        if stat:
            raise SloError(f"{where}: {head} is one value per session; it takes no .{stat}")
        stat_or_none = None
    elif head in WORD_METRICS:
        if stat not in WORD_STATS:
            raise SloError(f"{where}: {head} has one value per word; say which over the session, "
                           f"e.g. {head}.max (one of {', '.join(WORD_STATS)})")
        stat_or_none = stat
    else:
        raise SloError(f"{where}: unknown per-session metric {head!r} "
                       f"(known: {', '.join([*SESSION_METRICS, *WORD_METRICS])})")
    return Objective(text.strip(), head, stat_or_none, op, parse_value(value, Kind.TIME, context=where))
