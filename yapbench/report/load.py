"""A run directory read into pandas frames: the report's only input.

Torn last lines (the writer was killed mid-write) are dropped in every file. Words and send lags are read with
explicit dtypes and only the columns the report uses, which keeps a million words well under a second and a
few hundred megabytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import runlog
from ..errors import UserError
from ..metrics import NOT_SERVED

SERVER = "server.csv"  # the load's /api/modules_info poller (docs/run-directory.md)

WORD_DTYPES = {"session_id": "category", "lag_ms": "float64", "end_lag_ms": "float64", "t": "float64"}
GPU_DTYPES = {
    "t": "float64", "gpu": "int64", "name": "string", "util_pct": "float64", "mem_used_mib": "float64",
    "mem_total_mib": "float64", "power_w": "float64", "temp_c": "float64", "sm_clock_mhz": "float64",
}
SERVER_DTYPES = {"t": "float64", "target": "string", "used_slots": "float64", "total_slots": "float64"}
NOT_SERVED_NAMES = frozenset(str(o) for o in NOT_SERVED)


@dataclass
class RunData:
    dir: Path
    meta: dict
    sessions: pd.DataFrame  # one row per sessions.jsonl record, plus `served`
    words: pd.DataFrame  # lag_ms, end_lag_ms, t, srow (row of its session in `sessions`)
    send_lag: np.ndarray  # runlog.SEND_LAG_DTYPE records
    gpu: pd.DataFrame | None
    server: pd.DataFrame | None
    start: float  # epoch seconds: the run's (or the window's) start
    end: float
    notes: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return max(self.end - self.start, 0.0)

    @property
    def targets(self) -> list[str]:
        return sorted(self.sessions["target"].dropna().unique().tolist())


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
        records = runlog.read_session_records(d)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"run directory {d}: {exc}") from None
    notes: list[str] = []
    sessions = _sessions_frame(records)
    lo = -np.inf if since is None else since
    hi = np.inf if until is None else until
    if since is not None or until is not None:
        sessions = sessions[(sessions["started_at"] >= lo) & (sessions["started_at"] < hi)].reset_index(drop=True)
    send_lag = runlog.read_send_lag(d)
    if since is not None or until is not None:
        send_lag = send_lag[(send_lag["t"] >= lo) & (send_lag["t"] < hi)]
    start, end = _span(meta, sessions, lo, hi)
    return RunData(
        dir=d,
        meta=meta,
        sessions=sessions,
        words=_words_frame(d / runlog.WORDS, sessions),
        send_lag=send_lag,
        gpu=_window(_read_csv(d / runlog.GPU, GPU_DTYPES, notes), lo, hi),
        server=_window(_read_csv(d / SERVER, SERVER_DTYPES, notes), lo, hi),
        start=start,
        end=end,
        notes=notes,
    )


def _sessions_frame(records: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame.from_records(records)
    if df.empty:
        df = pd.DataFrame(columns=["session_id", "target", "sample", "outcome", "started_at", "ended_at",
                                   "audio_s", "transcript"])
    # Columns that a writer could leave all-null still need a float dtype for the numeric code downstream.
    for col in ("started_at", "ended_at", "audio_s", "connect_ms", "ready_ms", "first_response_ms",
                "first_word_ms", "finalize_ms", "backlog_max_ms", "words"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64") if col in df else np.nan
    df["served"] = ~df["outcome"].isin(NOT_SERVED_NAMES)
    return df


def _empty_words() -> pd.DataFrame:
    return pd.DataFrame({"lag_ms": np.zeros(0), "end_lag_ms": np.zeros(0), "t": np.zeros(0),
                         "srow": np.zeros(0, dtype=np.int64)})


def _words_frame(path: Path, sessions: pd.DataFrame) -> pd.DataFrame:
    """Words of the given sessions only: words whose session line never came (killed mid-session) are dropped."""
    if not path.exists() or path.stat().st_size == 0:
        return _empty_words()
    try:
        raw = pd.read_csv(_complete_lines(path), usecols=list(WORD_DTYPES), dtype=WORD_DTYPES, engine="c")
    except (ValueError, pd.errors.ParserError) as exc:
        raise UserError(f"{path}: cannot be read as words.csv ({exc})") from None
    codes = raw["session_id"].cat.codes.to_numpy()
    # Category -> row of its session (or -1), then word -> row through the category codes: no per-row Python.
    cat_rows = pd.Index(sessions["session_id"]).get_indexer(raw["session_id"].cat.categories)
    srow = np.where(codes >= 0, cat_rows[codes], -1)
    keep = srow >= 0
    return pd.DataFrame({
        "lag_ms": raw["lag_ms"].to_numpy()[keep],
        "end_lag_ms": raw["end_lag_ms"].to_numpy()[keep],
        "t": raw["t"].to_numpy()[keep],
        "srow": srow[keep],
    })


def _complete_lines(path: Path) -> Path | io.BytesIO:
    """The file itself, or its bytes up to the last newline when the last line is torn."""
    with open(path, "rb") as f:
        f.seek(-1, io.SEEK_END)
        if f.read(1) == b"\n":
            return path
        f.seek(0)
        data = f.read()
    return io.BytesIO(data[: data.rfind(b"\n") + 1])


def _read_csv(path: Path, dtypes: dict[str, str], notes: list[str]) -> pd.DataFrame | None:
    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        df = pd.read_csv(_complete_lines(path), dtype=dtypes)
    except (ValueError, pd.errors.ParserError) as exc:
        notes.append(f"{path.name} ignored: {exc}")
        return None
    missing = [c for c in dtypes if c not in df.columns]
    if missing:
        notes.append(f"{path.name} ignored: missing column(s) {', '.join(missing)}")
        return None
    return df


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


def _as_float(v: object) -> float | None:
    try:
        return float(v) if v is not None else None
    except (TypeError, ValueError):
        return None

