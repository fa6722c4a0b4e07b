"""The conversations' part of summary.json: per-turn distributions and rates from the turns of served sessions
(turns.bin; docs/metrics.md defines each turn's values, docs/report.md the summary's names)."""

from __future__ import annotations

from typing import Callable

import pandas as pd

from ..metricdefs import TURN_METRICS
from .schema import ratio

NO_SIGNAL_NOTE = ("no end-of-turn signal: the server sent no Step with the pause head (a model without extra heads, "
                  "e.g. stt-2.6b-en), so end_of_turn_detect was not measured")


def turn_section(turns: pd.DataFrame, stats: Callable[[pd.Series], dict]) -> dict:
    """`turns`, the turn metrics' statistics and the rates; every name present (0, {"count": 0}, None) without
    conversations, so a condition on them says "no data" rather than naming an unknown metric."""
    n = len(turns)
    signalled = turns[turns["end_of_turn_signal"] > 0]
    speech = float(turns["speech_s"].sum())
    return {
        "turns": n,
        **{key: stats(turns[col]) for key, col in TURN_METRICS.items()},
        # Judged only where the server sent the pause head: without it nothing was detected, falsely or not.
        "false_end_of_turn_rate": ratio(int((signalled["false_end_of_turn"] > 0).sum()), len(signalled)),
        "end_of_turn_missed_rate": ratio(int(signalled["end_of_turn_ms"].isna().sum()), len(signalled)),
        # The share of a conversation's slot time that carries speech: conversations x this = streams of speech.
        "speech_share": ratio(speech, speech + float(turns["pause_after_s"].sum())),
    }


def turn_notes(turns: pd.DataFrame) -> list[str]:
    """One line when conversations ran but no turn's session saw the end-of-turn signal."""
    return [NO_SIGNAL_NOTE] if len(turns) and not (turns["end_of_turn_signal"] > 0).any() else []
