"""The conversations' PNGs: CDFs of the per-turn metrics, and one conversation's turns on a timeline. Both are None
for a run without conversations (no turns.bin), so the report shows them only when there is something to show."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..metricdefs import METRICS, Source
from .bulk import sample_cdf
from .load import RunData
from .plots import CDF_POINTS, DPI, Cdfs, latency_cdfs

TURN_CDF_PNG = "turn_cdf.png"
TIMELINE_PNG = "conversation.png"


def turn_cdfs(run: RunData, out_dir: Path) -> str | None:
    """One CDF per turn metric that some turn observed (turn_flush only with flush=turn)."""
    values: Cdfs = {}
    for metric in METRICS:
        if not metric.plot or metric.source != Source.TURN:
            continue
        v = run.turns[metric.field].to_numpy(dtype=np.float64)
        v = v[~np.isnan(v)]
        if v.size:
            values[metric.name] = {"all turns": (sample_cdf(v, CDF_POINTS), v.size)}
    return latency_cdfs(values, out_dir, TURN_CDF_PNG)


def timeline(run: RunData, out_dir: Path) -> str | None:
    """The first ok conversation with the most turns: each turn's speech and pause as sent, every Word as it
    arrived, and per turn its first word, its last word, the end-of-turn detection and its flush echo."""
    ok_rows = np.flatnonzero((run.sessions["outcome"] == "ok").to_numpy())
    turns = run.turns[np.isin(run.turns["srow"].to_numpy(), ok_rows)]
    if turns.empty:
        return None
    counts = turns.groupby("srow").size()
    row = int(counts.index[counts.to_numpy().argmax()])
    mine = turns[turns["srow"] == row].sort_values("idx")
    session = run.sessions.iloc[row]
    offset = run.start - float(session["started_at"])  # words' t is seconds after the run's start
    words = run.words["t"].to_numpy()[run.words["srow"].to_numpy() == row] + offset

    fig = Figure(figsize=(13, 3.6), layout="constrained")
    ax = fig.subplots()
    starts, ends = mine["start_s"].to_numpy(), mine["end_s"].to_numpy()
    next_starts = np.append(starts[1:], float(session["ended_at"]) - float(session["started_at"]))
    ax.broken_barh(list(zip(starts, ends - starts)), (1.6, 0.8), color="C0", label="speech sent")
    ax.broken_barh(list(zip(ends, next_starts - ends)), (1.6, 0.8), color="C7", alpha=0.3, label="pause (silence)")
    ax.vlines(words, 0.6, 1.4, color="k", linewidth=1, label=f"Words received ({words.size})")
    events = (("first_word_ms", starts, "v", "C2", "turn's first word"),
              ("end_ms", ends, "^", "C1", "turn's last word"),
              ("end_of_turn_ms", ends, "D", "C3", "end of turn detected"),
              ("flush_ms", ends, "s", "C4", "turn Marker echoed"))
    for col, base, marker, colour, label in events:
        at = base + mine[col].to_numpy(dtype=np.float64) / 1000.0
        seen = ~np.isnan(at)
        if seen.any():
            ax.plot(at[seen], np.full(seen.sum(), 2.7), marker, color=colour, label=label, linestyle="none")
    for k, (a, b) in enumerate(zip(starts, ends)):
        ax.text((a + b) / 2, 2.0, f"turn {k + 1}", ha="center", va="center", color="white", fontsize=8)
    ax.set_yticks([1.0, 2.0, 2.7], ["words", "turns", "events"])
    ax.set_ylim(0.3, 3.1)
    ax.set_xlabel(f"seconds since the session started ({session['sample']}, speed {run.meta.get('speed', 1.0)})")
    ax.grid(alpha=0.3, axis="x")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.savefig(out_dir / TIMELINE_PNG, dpi=DPI)
    return TIMELINE_PNG
