"""The run directory: raw records, appended as sessions complete, so a crash loses only sessions in flight.

Layout (docs/run-directory.md is the reference):

    run.json        what was run (target, samples with transcripts, users, speed, ...); rewritten at start and end
    sessions.jsonl  one JSON object per finished session (SessionResult.record())
    words.csv       one row per Word, with its EndWord when one came (WORD_COLUMNS)
    send_lag.bin    one SEND_LAG_DTYPE record per speech frame sent: the generator's own health
    gpu.csv         NVML samples, when a GPU was visible (yapbench.gpu)

Everything is append-only and flushed per batch; readers tolerate a torn last line (a kill -9 mid-write).
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .metrics import SessionResult

RUN_META = "run.json"
SESSIONS = "sessions.jsonl"
WORDS = "words.csv"
SEND_LAG = "send_lag.bin"
GPU = "gpu.csv"

WORD_COLUMNS = ("session_id", "idx", "text", "start_time", "stop_time", "recv_ms", "lag_ms", "end_lag_ms", "t")
SEND_LAG_DTYPE = np.dtype([("t", "<f8"), ("lag_ms", "<f4")])  # t: epoch seconds of the send


def new_run_id(prefix: str = "run") -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def default_run_dir(root: str | Path = "reports") -> Path:
    return Path(root) / new_run_id()


WordRow = tuple[Any, ...]


def rows_of(result: SessionResult) -> tuple[dict, list[WordRow], bytes]:
    """A finished session as the three kinds of record (plain data: they cross process boundaries as is)."""
    t0 = result.send_times[0] if result.send_times.size else result.started_at
    words = [
        (
            result.session_id,
            i,
            w.text,
            round(w.start_time, 4),
            None if w.stop_time is None else round(w.stop_time, 4),
            round(w.recv_ms, 3),
            round(w.lag_ms, 3),
            None if w.end_lag_ms is None else round(w.end_lag_ms, 3),
            round(t0 + w.recv_ms / 1000.0, 4),
        )
        for i, w in enumerate(result.words)
    ]
    lag = np.empty(result.send_lag_ms.size, dtype=SEND_LAG_DTYPE)
    lag["t"] = result.send_times[: lag.size]
    lag["lag_ms"] = result.send_lag_ms
    return result.record(), words, lag.tobytes()


class RunLog:
    """Appends records to a run directory; safe to call from several greenlets or threads."""

    def __init__(self, run_dir: str | Path) -> None:
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._sessions = open(self.dir / SESSIONS, "a", encoding="utf-8")
        new_words = not (self.dir / WORDS).exists() or (self.dir / WORDS).stat().st_size == 0
        self._words = open(self.dir / WORDS, "a", encoding="utf-8", newline="")
        if new_words:
            self._words.write(",".join(WORD_COLUMNS) + "\n")
            self._words.flush()
        self._send_lag = open(self.dir / SEND_LAG, "ab")
        self.sessions_written = 0

    def write_meta(self, meta: dict) -> None:
        """run.json, replaced atomically (written at start, completed at the end)."""
        path = self.dir / RUN_META
        base = read_meta(self.dir) if path.exists() else {}
        base.update(meta)
        base.setdefault("run_id", self.dir.name)
        base.setdefault("generator_host", socket.gethostname())
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(base, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    def write_result(self, result: SessionResult) -> None:
        self.append([rows_of(result)])

    def append(self, batch: Iterable[tuple[dict, list[WordRow], bytes]]) -> None:
        """Write several sessions' records (e.g. a batch a worker shipped to the master)."""
        sessions, words, lags = io.StringIO(), io.StringIO(), bytearray()
        writer = csv.writer(words, lineterminator="\n")
        n = 0
        for record, word_rows, send_lag in batch:
            sessions.write(json.dumps(record, separators=(",", ":")) + "\n")
            writer.writerows(("" if v is None else v for v in row) for row in word_rows)
            lags += send_lag
            n += 1
        if not n:
            return
        with self._lock:
            # Words and lags first: a session line is the commit record that says its words are complete.
            self._words.write(words.getvalue())
            self._words.flush()
            self._send_lag.write(lags)
            self._send_lag.flush()
            self._sessions.write(sessions.getvalue())
            self._sessions.flush()
            self.sessions_written += n

    def close(self) -> None:
        with self._lock:
            for f in (self._sessions, self._words, self._send_lag):
                if not f.closed:
                    f.close()


def read_meta(run_dir: str | Path) -> dict:
    path = Path(run_dir) / RUN_META
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def read_session_records(run_dir: str | Path) -> list[dict]:
    """All complete session lines; a torn last line (the writer was killed mid-line) is skipped."""
    path = Path(run_dir) / SESSIONS
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            out.append(json.loads(line))
    return out


def read_send_lag(run_dir: str | Path) -> np.ndarray:
    path = Path(run_dir) / SEND_LAG
    if not path.exists():
        return np.zeros(0, dtype=SEND_LAG_DTYPE)
    data = path.read_bytes()
    usable = len(data) - len(data) % SEND_LAG_DTYPE.itemsize
    return np.frombuffer(data[:usable], dtype=SEND_LAG_DTYPE)
