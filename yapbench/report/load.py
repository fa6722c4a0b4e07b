"""A run directory read into pandas frames: the report's only input (the format is yapbench.runlog's).

Torn last records (the writer was killed mid-write) are dropped in every file. Words are read in chunks and keep
only the columns the report uses (float32 lags), so ninety million of them fit in about two gigabytes.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import union_categoricals

from .. import runlog
from ..errors import UserError
from ..metricdefs import ARRIVAL_FIELDS, SESSION_FIELDS
from ..metrics import NOT_SERVED
from .sendlag import SendLag

NOT_SERVED_NAMES = frozenset(str(o) for o in NOT_SERVED)


@dataclass
class RunData:
    dir: Path
    meta: dict
    sessions: pd.DataFrame  # one row per sessions.jsonl record, in start order, plus `served` and `line` (its line)
    # lag_ms, end_lag_ms, t (float32, seconds after `start`), srow (its session's row), in the sessions' row order
    words: pd.DataFrame
    turns: pd.DataFrame  # a conversation's turns (runlog.TURN_DTYPE's columns but `session`), srow likewise
    send_lag: SendLag
    gpu: pd.DataFrame | None
    server: pd.DataFrame | None
    server_metrics: pd.DataFrame | None  # the servers' /metrics per scrape interval (yapbench.servermetrics)
    start: float  # epoch seconds: the run's (or the window's) start
    end: float
    notes: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return max(self.end - self.start, 0.0)

    @property
    def targets(self) -> list[str]:
        return sorted(self.sessions["target"].dropna().unique().tolist())


def target_codes(run: RunData) -> tuple[np.ndarray, np.ndarray, pd.Index]:
    """Each session's and each word's target as a code into the names returned (pd.factorize: -1 for none); the
    words' as int8 where they fit, not int64 (ninety million words: 90 MB, not 720)."""
    codes, names = pd.factorize(run.sessions["target"])
    small = codes.astype(np.int8 if len(names) < 2**7 else np.int32)
    return codes, gather(small, run.words["srow"].to_numpy()), names


def gather(table: np.ndarray, index: np.ndarray) -> np.ndarray:
    """table[index], a chunk of the index at a time: numpy first copies an int32 index into int64 (8 bytes a word,
    660 MB for ninety million words at once)."""
    out = np.empty(index.size, dtype=table.dtype)
    for a in range(0, index.size, runlog.WORD_CHUNK):
        out[a: a + runlog.WORD_CHUNK] = table[index[a: a + runlog.WORD_CHUNK]]
    return out


def load_run(run_dir: str | Path, since: float | None = None, until: float | None = None) -> RunData:
    """Read a run directory; with `since`/`until` (epoch seconds) keep only sessions that started in that window,
    their words, and the send lags and telemetry sampled in it."""
    d = Path(run_dir)
    if not d.is_dir():
        raise UserError(f"run directory {d}: no such directory")
    if not (d / runlog.SESSIONS).exists():
        raise UserError(f"run directory {d}: no {runlog.SESSIONS} (not a run directory, or the run never started)")
    try:
        meta = runlog.read_meta(d)
        legacy = not (d / runlog.WORDS).exists() and (d / runlog.WORDS_CSV).exists()  # words name their session
        all_sessions = _all_sessions(d, meta, legacy)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"run directory {d}: {exc}") from None
    if runlog.schema_of(meta) > runlog.SCHEMA_VERSION:
        raise UserError(f"run directory {d}: written by a newer yapbench (run.json schema "
                        f"{runlog.schema_of(meta)}; this one reads up to {runlog.SCHEMA_VERSION})")
    notes: list[str] = []
    lo = -np.inf if since is None else since
    hi = np.inf if until is None else until
    lines = len(all_sessions)
    started_by_line = all_sessions["started_at"].to_numpy()
    ids_by_line = all_sessions["session_id"].to_numpy() if legacy else []
    # Rows in start order (`line` keeps each one's place in sessions.jsonl), the words laid out alike: a time
    # window is then a slice of both, not a copy of millions of words.
    sessions = all_sessions.take(np.argsort(started_by_line, kind="stable")).reset_index(drop=True)
    del all_sessions  # millions of rows: not kept beside their sorted copy while the words load
    if since is not None or until is not None:
        sessions = sessions.iloc[_started_in(sessions, lo, hi)].reset_index(drop=True)
    start, end = _span(meta, sessions, lo, hi)
    try:
        words = runlog.read_words(d, ids_by_line, started_by_line, t0=start)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    send_lag = SendLag.read(d, meta)
    if since is not None or until is not None:
        send_lag = send_lag.window(lo, hi)
    return RunData(
        dir=d,
        meta=meta,
        sessions=sessions,
        words=_words_frame(words, sessions, lines),
        turns=_turns_frame(runlog.read_turns(d, lines), sessions, lines),
        send_lag=send_lag,
        gpu=_window(_read_csv(d / runlog.GPU, runlog.GPU_DTYPES, notes, runlog.GPU_ADDED), lo, hi),
        server=_window(_read_csv(d / runlog.SERVER, runlog.SERVER_DTYPES, notes), lo, hi),
        server_metrics=_window(_read_csv(d / runlog.SERVER_METRICS, runlog.SERVER_METRICS_DTYPES, notes), lo, hi),
        start=start,
        end=end,
        notes=notes,
    )


def window(run: RunData, lo: float, hi: float) -> RunData:
    """The part of a loaded run in [lo, hi): sessions that started in it and their words (slices of the run's:
    only the words' session rows are renumbered), the send lags and telemetry sampled in it."""
    rows = _started_in(run.sessions, lo, hi)
    srow = run.words["srow"].to_numpy()
    # Words are in their sessions' row order. The bounds in srow's own dtype: numpy would copy srow to match them.
    wa, wb = np.searchsorted(srow, np.array([rows.start, rows.stop], dtype=srow.dtype))
    words = run.words.iloc[wa:wb].reset_index(drop=True).assign(srow=srow[wa:wb] - np.int32(rows.start))
    tsrow = run.turns["srow"].to_numpy()
    turns = run.turns[(tsrow >= rows.start) & (tsrow < rows.stop)]
    turns = turns.assign(srow=turns["srow"].to_numpy() - np.int32(rows.start))
    return RunData(dir=run.dir, meta=run.meta, sessions=run.sessions.iloc[rows].reset_index(drop=True), words=words,
                   turns=turns, send_lag=run.send_lag.window(lo, hi), gpu=_window(run.gpu, lo, hi),
                   server=_window(run.server, lo, hi), server_metrics=_window(run.server_metrics, lo, hi),
                   start=max(run.start, lo), end=max(min(run.end, hi), lo),
                   notes=run.notes)


def _started_in(sessions: pd.DataFrame, lo: float, hi: float) -> slice:
    """The rows of sessions in start order that started in [lo, hi)."""
    a, b = np.searchsorted(sessions["started_at"].to_numpy(), [lo, hi])
    return slice(int(a), int(b))


# The sessions.jsonl columns the report reads. Repeated strings become categoricals: millions of rows, few values.
SESSION_COLUMNS = ("target", "sample", "outcome", "transcript", "started_at", "ended_at", "audio_s", *SESSION_FIELDS,
                   "words")
CATEGORIES = ("target", "sample", "outcome", "transcript")
OPEN_LOOP_COLUMNS = ("due_at", *ARRIVAL_FIELDS)


def _all_sessions(d: Path, meta: dict, legacy: bool) -> pd.DataFrame:
    """Every complete session line as a row: from sessions.bin where the run has one and it holds every column
    the report reads, else from the JSON lines."""
    # Open-loop runs also need each session's due time and lateness, which only the session lines hold.
    open_loop = bool(meta.get("arrival_rate") or meta.get("capacity_model") == "open")
    columns = SESSION_COLUMNS + (("session_id",) if legacy else ()) + (OPEN_LOOP_COLUMNS if open_loop else ())
    numbers = None if legacy or open_loop else runlog.read_session_numbers(d)
    return _sessions_frame(d, columns) if numbers is None else _sessions_from_numbers(d, numbers)


def _sessions_frame(run_dir: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    """One row per session line, decoded block by block into columns; blocks in parallel processes when there are
    several (a one-hour run at 10,000 streams has three million lines) and this process is not gevent's."""
    blocks = runlog.session_blocks(run_dir)
    jobs = [(run_dir, start, end, columns) for start, end in blocks]
    if len(blocks) > 1 and (os.cpu_count() or 1) > 1 and not _gevent_patched():
        ctx = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(min(len(blocks), os.cpu_count() or 1), mp_context=ctx) as pool:
            parts = list(pool.map(_block_columns, *zip(*jobs)))
    else:
        parts = [_block_columns(*job) for job in jobs]
    df = pd.DataFrame({c: _concat(c, [p[c] for p in parts]) for c in columns}, copy=False)
    df["served"] = ~df["outcome"].isin(NOT_SERVED_NAMES)
    df["line"] = np.arange(len(df))  # its line in sessions.jsonl: how words refer to it
    return df


def _sessions_from_numbers(run_dir: Path, numbers: np.ndarray) -> pd.DataFrame:
    """The same frame from sessions.bin: numbers as they are, each distinct string read once from its first line."""
    cols: dict = {}
    for c in SESSION_COLUMNS:
        if c in CATEGORIES:
            codes, categories = runlog.session_strings(run_dir, numbers, c)
            known = [i for i, v in enumerate(categories) if v is not None]
            remap = np.full(len(categories), -1, dtype=np.int64)
            remap[known] = np.arange(len(known))
            cols[c] = pd.Categorical.from_codes(remap[codes] if len(codes) else codes,
                                                categories=[categories[i] for i in known])
        else:
            cols[c] = numbers[c].astype(np.float64)
    df = pd.DataFrame(cols, copy=False)
    df["served"] = ~df["outcome"].isin(NOT_SERVED_NAMES)
    df["line"] = np.arange(len(df))
    return df


def _block_columns(run_dir: Path, start: int, end: int, columns: tuple[str, ...]) -> dict:
    values = runlog.decode_session_block(run_dir, start, end, columns)
    return {c: pd.Categorical(v) if c in CATEGORIES else
            np.array(v, dtype=object) if c == "session_id" else np.array(v, dtype=np.float64)
            for c, v in zip(columns, values)}


def _gevent_patched() -> bool:
    """Inside a Locust process (the report at the end of a run) a process pool's threads would be greenlets."""
    if "gevent" not in sys.modules:
        return False
    from gevent import monkey

    return bool(monkey.is_module_patched("threading"))


def _concat(column: str, parts: list) -> pd.Categorical | np.ndarray:
    if column in CATEGORIES:
        return union_categoricals(parts) if parts else pd.Categorical([])
    return np.concatenate(parts) if parts else np.zeros(0, dtype=object if column == "session_id" else np.float64)


def _served_rows(sessions: pd.DataFrame, lines: int, line: np.ndarray) -> np.ndarray:
    """The row in `sessions` of each session line in `line`, -1 where that session is not a served one of them."""
    row_of_line = np.full(lines + 1, -1, dtype=np.int32)
    row_of_line[sessions["line"].to_numpy()[sessions["served"].to_numpy()]] = np.flatnonzero(sessions["served"])
    return row_of_line[line].astype(np.int32)


ROW_CHUNK = 250_000  # sessions whose rows are written into the words' column at a time (~6 M words)


def _words_frame(words: runlog.Words, sessions: pd.DataFrame, lines: int) -> pd.DataFrame:
    """Words of the given (served) sessions only, in the sessions' row order (each session's words together, as
    written), each with its session's row. Consumes `words`: a column is replaced by its reordered copy (one
    column's worth of memory at a time), and the rows are written over the lines (4 bytes a word fewer)."""
    served = sessions["served"].to_numpy()
    row_lines = sessions["line"].to_numpy()
    # Words per line from their sorted lines (np.bincount would copy ninety million lines into int64 first).
    per_line = np.diff(np.searchsorted(words.line, np.arange(lines + 2, dtype=words.line.dtype)))
    per_row = np.where(served, per_line[row_lines], 0)
    row_first = np.cumsum(per_row) - per_row
    # Word i of line l goes to i + shift[l]; the words of lines without a served row here are left out.
    shift = np.zeros(lines + 1, dtype=np.int64)
    shift[row_lines[served]] = row_first[served] - (np.cumsum(per_line) - per_line)[row_lines[served]]
    kept = np.zeros(lines + 1, dtype=bool)
    kept[row_lines[served]] = True
    if per_line[~kept].any() or shift.any():  # else they already are in row order (lines in start order)
        for name in ("t", "lag_ms", "end_lag_ms"):
            setattr(words, name, _placed(getattr(words, name), words.line, shift, kept, int(per_row.sum())))
    srow = words.line.view(np.int32)[: int(per_row.sum())]
    for a in range(0, len(per_row), ROW_CHUNK):
        counts = per_row[a: a + ROW_CHUNK]
        srow[row_first[a]: row_first[a] + counts.sum()] = np.repeat(np.arange(a, a + counts.size, dtype=np.int32),
                                                                    counts)
    return pd.DataFrame({"lag_ms": words.lag_ms, "end_lag_ms": words.end_lag_ms, "t": words.t, "srow": srow},
                        copy=False)


def _placed(values: np.ndarray, line: np.ndarray, shift: np.ndarray, kept: np.ndarray, n: int) -> np.ndarray:
    """`values` (one per word, in line order) moved to their places in row order, a chunk at a time."""
    out = np.empty(n, dtype=values.dtype)
    for a in range(0, line.size, runlog.WORD_CHUNK):
        chunk = line[a: a + runlog.WORD_CHUNK]
        keep = kept[chunk]
        out[(np.arange(a, a + chunk.size) + shift[chunk])[keep]] = values[a: a + chunk.size][keep]
    return out


def _turns_frame(turns: np.ndarray, sessions: pd.DataFrame, lines: int) -> pd.DataFrame:
    """Turns of the given (served) sessions only, each with the row of its session in `sessions`."""
    srow = _served_rows(sessions, lines, turns["session"])
    keep = srow >= 0
    cols = {name: turns[name][keep] for name in runlog.fields_of(runlog.TURN_DTYPE)[1:]}
    return pd.DataFrame({**cols, "srow": srow[keep]}, copy=False)


def _read_csv(path: Path, dtypes: dict[str, str], notes: list[str], added: dict[str, object] | None = None,
              ) -> pd.DataFrame | None:
    try:
        return runlog.read_csv(path, dtypes, added)
    except ValueError as exc:
        notes.append(str(exc))
        return None


def _window(df: pd.DataFrame | None, lo: float, hi: float) -> pd.DataFrame | None:
    if df is None:
        return None
    df = df[(df["t"] >= lo) & (df["t"] < hi)]
    return df if len(df) else None


def _span(meta: dict, sessions: pd.DataFrame, lo: float, hi: float) -> tuple[float, float]:
    """The run's wall-clock span: run.json's, else the sessions' (a killed run has no end), clipped to the window."""
    start = _as_float(meta.get("started_at"))
    end = _as_float(meta.get("ended_at"))
    if start is None:
        start = float(sessions["started_at"].min()) if len(sessions) else 0.0
    if end is None:
        end = float(sessions["ended_at"].max()) if len(sessions) else start
    start, end = max(start, lo), min(end, hi)
    return start, max(end, start)


def _as_float(v: Any) -> float | None:
    try:
        return float(v) if v is not None else None
    except (TypeError, ValueError):
        return None

