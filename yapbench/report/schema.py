"""The shape of summary.json: which names exist, so conditions can be checked before any load runs.

Kept free of heavy imports: the condition language (yapbench.slo) and the gates read it at parse time.
docs/report.md is the reference for users.
"""

from __future__ import annotations

import operator
from typing import Callable

from typing import Sequence

from ..metricdefs import METRICS, SEND_LAG, START_LAG
from ..metrics import Outcome

SCHEMA_VERSION = 1

# The comparison operators of conditions (gates, capacity SLOs) and of goodput objectives.
OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt, "==": operator.eq,
}

# The latency metrics (summary key -> column, per source) are yapbench.metricdefs's: one entry each.
SEND_LAG_METRIC = SEND_LAG.name  # from send_lag.bin: one value per speech frame sent
START_LAG_METRIC = START_LAG.name  # open loop: how late each arrival started (or was dropped)
WER_SESSIONS_METRIC = "wer_sessions"  # distribution of per-session WER (a fraction, not milliseconds)

TIME_METRICS = tuple(m.name for m in METRICS if m.unit == "ms")  # values in milliseconds
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

# Names a condition may use for a summary key: the run directory's spelling with `_ms`, and shorter ones (`backlog`).
ALIASES: dict[str, str] = {alias: m.name for m in METRICS for alias in (m.suffixed, *m.aliases)}

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
