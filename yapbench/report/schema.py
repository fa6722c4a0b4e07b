"""The shape of summary.json: which names exist, so conditions can be checked before any load runs.

Kept free of heavy imports: the condition language (yapbench.slo) and the gates read it at parse time.
docs/report.md is the reference for users.
"""

from __future__ import annotations

import operator
from typing import Callable

from typing import Sequence

from ..metrics import Outcome

SCHEMA_VERSION = 1

# The comparison operators of conditions (gates, capacity SLOs) and of goodput objectives.
OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt, "==": operator.eq,
}

# Summary key -> sessions.jsonl column. Served sessions only (metrics.NOT_SERVED stay out).
SESSION_METRICS: dict[str, str] = {
    "connect": "connect_ms",
    "ready": "ready_ms",
    "first_response": "first_response_ms",
    "first_word": "first_word_ms",
    "finalize": "finalize_ms",
    "backlog_max": "backlog_max_ms",
}
# Summary key -> words.bin column: one value per Word (per EndWord for end_lag).
WORD_METRICS: dict[str, str] = {"word_lag": "lag_ms", "end_lag": "end_lag_ms"}
# Summary key -> turns.bin column: one value per turn of a served conversation (docs/metrics.md, Conversations).
TURN_METRICS: dict[str, str] = {"turn_first_word": "first_word_ms", "turn_end": "end_ms",
                                "end_of_turn_detect": "end_of_turn_ms", "turn_flush": "flush_ms"}
SEND_LAG_METRIC = "send_lag"  # from send_lag.bin: one value per speech frame sent
WER_SESSIONS_METRIC = "wer_sessions"  # distribution of per-session WER (a fraction, not milliseconds)
START_LAG_METRIC = "start_lag"  # open loop: how late each arrival started (or was dropped), from start_lag_ms

# values in milliseconds
TIME_METRICS = (*SESSION_METRICS, *WORD_METRICS, *TURN_METRICS, SEND_LAG_METRIC, START_LAG_METRIC)
DISTRIBUTIONS = (*TIME_METRICS, WER_SESSIONS_METRIC)
STATS = ("count", "min", "mean", "max", "p50", "p90", "p95", "p99")

# Fractions in [0, 1]: a condition may write them as percentages ("rejection_rate<=1%").
RATES = ("rejection_rate", "error_rate", "ok_rate", "wer", "blocking", "dropped_rate", "goodput", "erlang_b",
         "false_end_of_turn_rate", "end_of_turn_missed_rate", "speech_share")
THROUGHPUT = ("sessions_per_s", "ok_sessions_per_s", "audio_s_per_s", "words_per_s", "goodput_sessions_per_s")
# Offered traffic (docs/open-loop.md): the open loop's arrival rate and load in Erlangs, and the servers' slots.
SCALARS = ("sessions", "duration_s", "attempts", "arrival_rate", "measured_arrival_rate", "holding_s",
           "offered_erlangs", "carried_erlangs", "slots", "turns")
OUTCOMES = tuple(str(o) for o in Outcome)
GPU_FIELDS = ("util_pct", "mem_used_mib", "power_w")

# Names a condition may use for a summary key: the sessions.jsonl spelling with `_ms`, and the shorter `backlog`.
ALIASES: dict[str, str] = {f"{k}_ms": k for k in TIME_METRICS}
ALIASES.update({"backlog": "backlog_max", "backlog_ms": "backlog_max", "send_lag_ms": SEND_LAG_METRIC,
                "start_lag_ms": START_LAG_METRIC})

# Per-target sub-summaries (fleet runs) and per-sample WER are keyed by free-form names (URLs, file names).
TARGETS = "targets"
WER_BY_SAMPLE = "wer_by_sample"
WER_SAMPLE_FIELDS = ("wer", "sessions", "ref_words", "errors")


def number_at(summary: dict, keys: Sequence[str]) -> float | None:
    """The number at a path of keys into a summary (["first_word", "p95"]), None when the run did not observe it."""
    node: object = summary
    for key in keys:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return float(node) if isinstance(node, (int, float)) and not isinstance(node, bool) else None


def ratio(num: float, den: float) -> float | None:
    """A rate of the summary: num / den, None (JSON null) when there is nothing to divide by."""
    return float(num) / float(den) if den else None
