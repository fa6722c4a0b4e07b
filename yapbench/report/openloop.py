"""Summary numbers of offered traffic: blocking, goodput, offered and carried load, Erlang B (docs/open-loop.md).

- attempts: sessions that reached for the server (every arrival but the `dropped` ones)
- blocking: rejected / attempts ("no free channels": the telephone network's blocked calls)
- goodput: good / decided attempts (attempts less the sessions the end of the load cancelled); a session is good
  when its outcome is ok and it met every --goodput objective
- open loop only: the arrival rate measured over the arrival window, the mean holding time of the accepted
  sessions, offered load = attempt rate x holding time (Erlangs), carried load = accepted rate x holding time,
  the servers' slots (server.csv: /api/modules_info) and Erlang B for those slots at the offered load.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..arrivals import erlang_b
from .schema import OPS, ratio

GOOD = "good"  # boolean column added to the sessions frame when the run has goodput objectives


def good_sessions(sessions: pd.DataFrame, words: pd.DataFrame, objectives: list[dict]) -> np.ndarray:
    """One boolean per session: served to the end (ok) and every objective (goodput.Objective.record()) met;
    a value the session never produced fails."""
    good = (sessions["outcome"] == "ok").to_numpy().copy()
    for obj in objectives:
        if obj["stat"] is None:
            values = sessions[obj["column"]].to_numpy(dtype=np.float64)
        else:
            per_session = _word_stat(words, obj["column"], obj["stat"])
            values = per_session.reindex(np.arange(len(sessions))).to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            good &= ~np.isnan(values) & OPS[obj["op"]](values, obj["limit_ms"])
    return good


def _word_stat(words: pd.DataFrame, column: str, stat: str) -> pd.Series:
    grouped = words.dropna(subset=[column]).groupby("srow")[column]
    if stat.startswith("p"):
        return grouped.quantile(float(stat[1:]) / 100.0)  # linear interpolation, as metrics.summarize
    return grouped.agg(stat)


def section_rates(sessions: pd.DataFrame, duration_s: float) -> dict:
    """Blocking and goodput of a set of sessions (the whole run, or one target)."""
    outcome = sessions["outcome"]
    dropped = int((outcome == "dropped").sum())
    attempts = len(sessions) - dropped
    decided = attempts - int((outcome == "cancelled").sum())
    out: dict = {
        "attempts": attempts,
        "blocking": ratio(int((outcome == "rejected").sum()), attempts),
        "dropped_rate": ratio(dropped, len(sessions)),
        "goodput": None,
    }
    if GOOD in sessions:
        good = int(sessions[GOOD].sum())
        out["goodput"] = ratio(good, decided)
        out["goodput_sessions_per_s"] = ratio(good, duration_s)
    return out


def traffic(sessions: pd.DataFrame, meta: dict, start: float, end: float, server: pd.DataFrame | None) -> dict:
    """Offered and carried load against Erlang B; all None in a closed-loop run (no arrival rate)."""
    out: dict = {k: None for k in ("arrival_rate", "measured_arrival_rate", "holding_s", "offered_erlangs",
                                   "carried_erlangs", "slots", "erlang_b")}
    out["arrival_process"] = meta.get("arrival")
    rate = meta.get("arrival_rate")
    if not rate:
        return out
    out["arrival_rate"] = float(rate)
    due = sessions["due_at"].to_numpy(dtype=np.float64) if "due_at" in sessions else np.zeros(0)
    due = due[~np.isnan(due)]
    # The arrival window: from the schedule's (or the summary window's) start to the last arrival; the stop's drain
    # adds time but no arrivals.
    start = max(start, float(meta.get("arrival_start") or start))
    span = (min(end, float(due.max())) - start) if due.size else 0.0
    outcome = sessions["outcome"]
    attempts = int((outcome != "dropped").sum())
    accepted = sessions[sessions["served"] & (outcome != "cancelled")]
    holding = (accepted["ended_at"] - accepted["started_at"]).to_numpy(dtype=np.float64)
    if span <= 0 or len(due) < 2 or not holding.size:
        return out
    # (n - 1) / span: exact for an even grid that starts at the window's start, unbiased for Poisson arrivals.
    rate = out["measured_arrival_rate"] = (len(due) - 1) / span
    out["holding_s"] = float(holding.mean())
    out["offered_erlangs"] = rate * attempts / len(due) * out["holding_s"]
    out["carried_erlangs"] = rate * int(sessions["served"].sum()) / len(due) * out["holding_s"]
    slots = _slots(server)
    if slots:
        out["slots"] = slots
        out["erlang_b"] = erlang_b(slots, out["offered_erlangs"])
    return out


def _slots(server: pd.DataFrame | None) -> int | None:
    """Total slots of the targets (/api/modules_info's total_slots, the largest seen per target)."""
    if server is None or not len(server):
        return None
    return int(server.groupby("target")["total_slots"].max().sum())


def traffic_rows(summary: dict) -> list[tuple[str, str]]:
    """The report's "Offered load" table (and the terminal's lines): empty for a closed-loop run without goodput."""
    rows: list[tuple[str, str]] = []
    if summary.get("arrival_rate"):
        rows.append(("arrivals", f"{summary.get('arrival_process') or 'poisson'} at {summary['arrival_rate']:g}/s "
                                 f"(measured {_num(summary.get('measured_arrival_rate'), '{:.3g}/s')})"))
        rows.append(("offered load", f"{_num(summary.get('offered_erlangs'), '{:.3g}')} Erlangs "
                                     f"(mean holding time {_num(summary.get('holding_s'), '{:.3g} s')})"))
        rows.append(("carried load", f"{_num(summary.get('carried_erlangs'), '{:.3g}')} Erlangs"))
        erl = summary.get("erlang_b")
        rows.append(("blocking", f"{_num(summary.get('blocking'), '{:.2%}')} measured; Erlang B for "
                                 f"{summary.get('slots') or '?'} slots: {_num(erl, '{:.2%}')}"))
        rows.append(("dropped", f"{summary['outcomes'].get('dropped', 0)} "
                                f"({_num(summary.get('dropped_rate'), '{:.2%}')} of arrivals: cap or generator)"))
    if summary.get("goodput") is not None or (summary.get("run") or {}).get("goodput_objectives"):
        rows.append(("goodput", f"{_num(summary.get('goodput'), '{:.2%}')} of decided attempts, "
                                f"{_num((summary.get('throughput') or {}).get('goodput_sessions_per_s'), '{:.3g}')} "
                                f"sessions/s ({summary['run'].get('goodput_objectives')})"))
    return rows


def _num(v: float | None, fmt: str) -> str:
    return "n/a" if v is None else fmt.format(v)
