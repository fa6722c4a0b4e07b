"""summary.json: exact percentiles, counts and rates of one run (or one time window of it).

Every number comes from the raw records (metrics.summarize: numpy order statistics), never from buckets, with
one exception: when a run sent more frames than the run directory keeps raw (runlog.SEND_LAG_RAW_LIMIT), the
send-lag figures are estimates from its log-bucketed histogram, within 1 %; `send_lag.exact` says which, and
`estimates` lists every such figure.
The layout is flat enough that a dotted path names any number: `first_word.p95`, `rejection_rate`,
`outcomes.ok`, `targets.<url>.word_lag.p99` (schema.py lists the names; docs/report.md documents them).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from .. import runlog
from ..metricdefs import GENERATOR_LAG_LIMIT_MS, SESSION_METRICS, START_LAG, WORD_METRICS
from ..metrics import NOT_ERRORS, TURN_SEP, summarize
from .load import RunData, target_codes, window
from .openloop import GOOD, good_sessions, section_rates, traffic
from .phases import Phase, phases_of, settle_of
from .schema import (GPU_FIELDS, OUTCOMES, SCHEMA_VERSION, SEND_LAG_METRIC, START_LAG_METRIC, TARGETS, WER_BY_SAMPLE,
                     WER_SESSIONS_METRIC, ratio)
from .turns import turn_notes, turn_section
from .wer import references, score_sessions, with_conversations

CONVERSATIONS = "(conversations)"  # wer_by_sample's entry for every conversation of more than one turn

RUN_KEYS = ("run_id", "target", "targets", "users", "spawn_rate", "speed", "shape", "started_at", "ended_at",
            "command", "generator_host", "yapbench_version", "arrival_rate", "arrival", "arrival_start",
            "goodput_objectives", "conversation")


def summarize_data(run: RunData, by_target: bool = True) -> dict:
    """The summary of a run or window; with `by_target`, each target's section too (a fleet run's)."""
    sessions = with_wer(run).sessions
    words = run.words  # words of served sessions only (load.py)
    objectives = run.meta.get("goodput") or []  # goodput.Objective records, parsed when the load started
    if run.meta.get("goodput_error"):
        run.notes.append(f"goodput not computed: {run.meta['goodput_error']}")
    if objectives:
        sessions = sessions.assign(**{GOOD: good_sessions(sessions, words, objectives)})
    summary: dict = {
        "schema": SCHEMA_VERSION,
        "run": _run_info(run),
        "window": {"start": run.start, "end": run.end},
    }
    summary.update(_section(sessions, words, run.turns, run.duration_s))
    summary.update(traffic(sessions, run.meta, run.start, run.end, run.server))
    summary[START_LAG_METRIC] = stats(sessions[START_LAG.field]) if START_LAG.field in sessions else {"count": 0}
    summary[SEND_LAG_METRIC] = run.send_lag.stats()
    summary["estimates"] = [] if run.send_lag.exact else [SEND_LAG_METRIC]
    p99 = summary[SEND_LAG_METRIC].get("p99")
    summary["generator_overloaded"] = p99 is not None and p99 > GENERATOR_LAG_LIMIT_MS
    if by_target and len(run.targets) > 1:
        codes, word_codes, names = target_codes(run)
        turn_codes = codes[run.turns["srow"].to_numpy()]
        summary[TARGETS] = {
            name: _section(sessions[codes == i], _word_rows(words, word_codes == i), run.turns[turn_codes == i],
                           run.duration_s)
            for i, name in enumerate(names)
        }
    if run.gpu is not None:
        summary["gpu"] = {"gpus": len(run.gpu[["host", "gpu"]].drop_duplicates()),
                          **{f: stats(run.gpu[f].to_numpy(dtype=np.float64)) for f in GPU_FIELDS}}
    summary["notes"] = run.notes + _wer_notes(sessions, run.meta) + _estimate_notes(summary) + turn_notes(run.turns)
    return summary


def _word_rows(words: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    """The columns a section reads of the words in `mask`, selected by numpy: pandas' .loc would first build an
    int64 index of the rows (8 bytes a row: 330 MB for half of ninety million words)."""
    return pd.DataFrame({c: words[c].to_numpy()[mask] for c in WORD_METRICS.values()}, copy=False)


def with_wer(run: RunData) -> RunData:
    """The run with each session's WER counts (scored once: the windows of a run share them)."""
    if "wer_errors" in run.sessions:
        return run
    refs = with_conversations(references(run.meta), run.sessions["sample"])
    return replace(run, sessions=run.sessions.join(score_sessions(run.sessions, refs)))


def stats(values: pd.Series | np.ndarray) -> dict:
    """metrics.summarize with an integer count; {"count": 0} when nothing was observed."""
    arr = values.to_numpy() if isinstance(values, pd.Series) else np.asarray(values)
    out = summarize(arr if arr.dtype.kind == "f" else arr.astype(np.float64))  # float32 stays float32: no copy
    out["count"] = int(out.get("count", 0))
    return out


def _section(sessions: pd.DataFrame, words: pd.DataFrame, turns: pd.DataFrame, duration_s: float) -> dict:
    """Counts, rates, latency distributions, WER and throughput of a set of sessions, their words and turns."""
    n = len(sessions)
    counts = sessions["outcome"].value_counts()
    outcomes = {o: int(counts.get(o, 0)) for o in OUTCOMES}
    outcomes.update({str(k): int(v) for k, v in counts.items() if k not in outcomes})  # from a newer writer
    # Row selections copy only the columns read: a million-session section would copy every column otherwise.
    served = sessions.loc[sessions["served"], list(SESSION_METRICS.values())]
    out: dict = {
        "sessions": n,
        "duration_s": duration_s,
        "outcomes": outcomes,
        "ok_rate": ratio(outcomes["ok"], n),
        "rejection_rate": ratio(outcomes["rejected"], n),
        "error_rate": ratio(n - sum(outcomes.get(str(o), 0) for o in NOT_ERRORS), n),
        **section_rates(sessions, duration_s),
    }
    for key, col in SESSION_METRICS.items():
        out[key] = stats(served[col])
    for key, col in WORD_METRICS.items():
        out[key] = stats(words[col])
    out.update(turn_section(turns, stats))
    scored = sessions.loc[sessions["wer_ref_words"] > 0, ["sample", "wer_errors", "wer_ref_words"]]
    out["wer"] = ratio(scored["wer_errors"].sum(), scored["wer_ref_words"].sum())
    out[WER_SESSIONS_METRIC] = stats(scored["wer_errors"] / scored["wer_ref_words"])
    by_sample = scored.groupby("sample")[["wer_errors", "wer_ref_words"]].agg(["sum", "count"])
    # Conversations (samples drawn per turn) pool under one name: a bar per combination of turns says nothing.
    pooled: dict[str, list[int]] = {}
    for name, row in by_sample.iterrows():
        acc = pooled.setdefault(CONVERSATIONS if TURN_SEP in str(name) else str(name), [0, 0, 0])
        acc[0] += int(row[("wer_errors", "count")])
        acc[1] += int(row[("wer_ref_words", "sum")])
        acc[2] += int(row[("wer_errors", "sum")])
    out[WER_BY_SAMPLE] = {name: {"wer": ratio(errors, ref_words), "sessions": n_scored, "ref_words": ref_words,
                                 "errors": errors} for name, (n_scored, ref_words, errors) in pooled.items()}
    out["throughput"] = {
        "sessions_per_s": ratio(n, duration_s),
        "ok_sessions_per_s": ratio(outcomes["ok"], duration_s),
        "audio_s_per_s": ratio(float(sessions["audio_s"].sum()), duration_s),
        "words_per_s": ratio(len(words), duration_s),
        "goodput_sessions_per_s": out.pop("goodput_sessions_per_s", None),
    }
    return out


def _run_info(run: RunData) -> dict:
    info = {k: run.meta[k] for k in RUN_KEYS if k in run.meta}
    info["targets"] = run.meta.get("targets") or ([run.meta["target"]] if run.meta.get("target") else run.targets)
    info["samples"] = sorted(run.meta.get("samples") or run.sessions["sample"].dropna().unique().tolist())
    return info


def _estimate_notes(summary: dict) -> list[str]:
    if not summary["estimates"]:
        return []
    return [f"send_lag figures are estimates within 1 % from send_lag_hist.bin: the run sent "
            f"{summary[SEND_LAG_METRIC]['count']:,} frames, more than the {runlog.SEND_LAG_RAW_LIMIT:,} kept raw "
            "(counts are exact)"]


def _wer_notes(sessions: pd.DataFrame, meta: dict) -> list[str]:
    refs = references(meta)
    # A conversation is skipped for its turns' samples that lack one: those are named, not each combination.
    ok_samples = sessions.loc[sessions["outcome"] == "ok", "sample"].dropna().unique()
    missing = sorted({part for name in map(str, ok_samples) for part in ([name] if name in refs else
                                                                       name.split(TURN_SEP))} - set(refs))
    if not missing:
        return []
    return [f"WER skipped for {len(missing)} sample(s) without a reference transcript in run.json: "
            + ", ".join(missing)]


def summarize_phases(run: RunData, settle_s: float | None = None) -> dict:
    """summary.json: the steady state's figures at the top level, every phase's under `phases`, and the whole
    run's session count and outcomes under `whole_run` (every session is accounted for)."""
    settle = settle_of(run.meta, settle_s)
    run = with_wer(run)
    phases = phases_of(run, settle)
    steady = next((p for p in phases if p.name == "steady"), None)
    if steady is None or steady.end <= steady.start:
        summary = summarize_data(run)
        summary["phases"] = {}
        if steady is not None:
            summary["notes"].append(f"no steady state: the run stopped within {settle:g} s of its last user "
                                    "starting; the figures cover the whole run")
    else:
        steady_part = window(run, steady.start, steady.end)
        summary = summarize_data(steady_part)
        # The steady state's phase entry is the headline's own figures; the others need no per-target sections.
        summary["phases"] = {}
        for p in phases:
            part = steady_part if p is steady else window(run, p.start, p.end)
            summary["phases"][p.name] = _phase(p, part, summary if p is steady else summarize_data(part, False))
        summary["notes"] += _lag_notes(summary["phases"])
    summary["whole_run"] = _whole_run(run)
    summary["window"]["settle_s"] = settle
    summary["window"]["steady_state"] = steady is not None and steady.end > steady.start
    return summary


def _whole_run(run: RunData) -> dict:
    counts = run.sessions["outcome"].value_counts()
    return {"start": run.start, "end": run.end, "duration_s": run.duration_s, "sessions": len(run.sessions),
            "outcomes": {str(k): int(v) for k, v in counts.items() if v}}


def _phase(phase: Phase, part: RunData, s: dict) -> dict:
    """A phase's entry in summary.json from its window of the run and that window's summary."""
    lag = part.send_lag
    late = lag.late(GENERATOR_LAG_LIMIT_MS)
    return {
        "start": phase.start, "end": phase.end, "duration_s": s["duration_s"], "sessions": s["sessions"],
        "outcomes": s["outcomes"], "ok_rate": s["ok_rate"], "error_rate": s["error_rate"],
        "first_word": s["first_word"], "word_lag": s["word_lag"], "send_lag": s["send_lag"],
        "frames": lag.size, "late_frames": late, "late_share": late / lag.size if lag.size else None,
        "generator_overloaded": s["generator_overloaded"],
    }


def _lag_notes(phases: dict[str, dict]) -> list[str]:
    return [f"generator lagged in the {name}: {p['late_share']:.1%} of its {p['frames']:,} frames were sent more "
            f"than {GENERATOR_LAG_LIMIT_MS:g} ms late (send lag p99 {p['send_lag']['p99']:.1f} ms)"
            + (": the headline figures, from the steady state, measured the generator" if name == "steady" else
               ": outside the steady state, so not in the headline figures")
            for name, p in phases.items() if p["generator_overloaded"]]
