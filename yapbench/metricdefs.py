"""The latency metrics yapbench measures, one entry each: adding a metric is one `Metric` in METRICS (plus the code
that measures it and its definition in docs/metrics.md).

Everything else reads this table: the run directory's session columns (runlog), the session record
(SessionResult.record), the summary and its percentile table, the report's CDF panels and headline, the names that
gates, capacity SLOs and goodput objectives accept, the web UI's STT tab and the Locust request statistics.
Free of imports: the condition language reads it at parse time, before pandas or numpy load.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Source(StrEnum):
    """Where a metric's values come from, and so how many values it has."""

    SESSION = "session"  # one per served session: a SessionResult field, a sessions.jsonl and sessions.bin column
    WORD = "word"  # one per Word: a WordTiming field and a words.bin column
    TURN = "turn"  # one per turn of a served conversation (--conversation): a TurnTiming field, a turns.bin column
    FRAME = "frame"  # one per speech frame sent: send_lag.bin (the generator's health, not the server's)
    ARRIVAL = "arrival"  # open loop: one per arrival, served or not; a sessions.jsonl column only


@dataclass(frozen=True)
class Metric:
    name: str  # the summary key, and the name in gates, SLOs, goodput objectives, plots and Locust's statistics
    source: Source
    field: str  # the record field and run-directory column that holds the values
    label: str  # for people: one session's lines (`yapbench client`)
    unit: str = "ms"
    plot: bool = True  # a panel of the report's CDFs (latency_cdf.png; a turn metric: turn_cdf.png)
    headline: bool = False  # a row of the plain-text summary (`yapbench run`, `yapbench report`)
    live: bool = True  # a row of the web UI's STT tab
    locust: bool = False  # every value is reported to Locust as a request of this name, so its own table has it
    aliases: tuple[str, ...] = ()  # shorter names conditions accept too

    @property
    def suffixed(self) -> str:
        """The name with its unit, as the run directory spells it (`first_word_ms`): conditions accept it, the STT
        tab shows it."""
        return f"{self.name}_{self.unit}"


METRICS: tuple[Metric, ...] = (
    Metric("connect", Source.SESSION, "connect_ms", "connect", locust=True),
    Metric("ready", Source.SESSION, "ready_ms", "ready", locust=True),
    Metric("first_response", Source.SESSION, "first_response_ms", "first response", locust=True),
    Metric("first_word", Source.SESSION, "first_word_ms", "first word", headline=True, locust=True),
    Metric("finalize", Source.SESSION, "finalize_ms", "finalize", headline=True, locust=True),
    Metric("backlog_max", Source.SESSION, "backlog_max_ms", "backlog max", headline=True,
           aliases=("backlog", "backlog_ms")),
    Metric("word_lag", Source.WORD, "lag_ms", "word lag", headline=True, locust=True),
    Metric("end_lag", Source.WORD, "end_lag_ms", "end lag", live=False),
    Metric("turn_first_word", Source.TURN, "first_word_ms", "turn first word", headline=True, live=False),
    Metric("turn_end", Source.TURN, "end_ms", "turn end", live=False),
    Metric("end_of_turn_detect", Source.TURN, "end_of_turn_ms", "end of turn detected", headline=True, live=False),
    Metric("turn_flush", Source.TURN, "flush_ms", "turn flush", live=False),
    SEND_LAG := Metric("send_lag", Source.FRAME, "lag_ms", "send lag", headline=True),
    START_LAG := Metric("start_lag", Source.ARRIVAL, "start_lag_ms", "start lag", plot=False, live=False),
)
BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}
# A speech frame sent later than this is late; a send lag p99 above it means the run measured the generator, not the
# server (docs/metrics.md). The report's warnings and phases, and the capacity searches' generator limit, read it.
GENERATOR_LAG_LIMIT_MS = 10.0


def of(source: Source) -> tuple[Metric, ...]:
    return tuple(m for m in METRICS if m.source == source)


# Summary key -> column, per source: what the summary, the report and goodput objectives iterate over.
SESSION_METRICS: dict[str, str] = {m.name: m.field for m in of(Source.SESSION)}  # served sessions only
WORD_METRICS: dict[str, str] = {m.name: m.field for m in of(Source.WORD)}
TURN_METRICS: dict[str, str] = {m.name: m.field for m in of(Source.TURN)}  # turns of served sessions
SESSION_FIELDS: tuple[str, ...] = tuple(SESSION_METRICS.values())  # SessionResult fields, in the records' order
ARRIVAL_FIELDS: tuple[str, ...] = tuple(m.field for m in of(Source.ARRIVAL))  # open loop only
