"""The run directory's format, writer and readers: the one place that knows each file's name and columns.

docs/run-directory.md documents this module (a test checks that the two agree). Layout of schema 2:

    run.json            what was run; rewritten at start and end; `schema` says which layout the files follow
    sessions.jsonl      one JSON object per finished session (SESSION_COLUMNS, SessionResult.record())
    sessions.bin        the numbers of each session line, and hashes of its strings (SESSION_BIN_DTYPE)
    words.bin           one WORD_DTYPE record per Word, keyed by its session's line in sessions.jsonl
    turns.bin           one TURN_DTYPE record per turn of a conversation (--conversation), keyed likewise
    send_lag.bin        one SEND_LAG_DTYPE record per speech frame sent, up to SEND_LAG_RAW_LIMIT frames
    send_lag_hist.bin   the same lags as a log-bucketed histogram per second (SEND_LAG_HIST_DTYPE, yapbench.loghist)
    gpu.csv             NVML / nvidia-smi samples (GPU_COLUMNS), when a GPU was visible
    server.csv          /api/modules_info polls (SERVER_COLUMNS)
    server_metrics.csv  the servers' /metrics per scrape interval (SERVER_METRICS_COLUMNS)

Schema 1 (run.json without `schema`) had words.csv (WORD_CSV_COLUMNS) and no histogram; it still loads.
Everything is append-only and flushed per batch; readers tolerate a torn last record (a kill -9 mid-write).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import GenericAlias
from typing import Iterable, Iterator, Sequence

import msgspec
import numpy as np

from . import loghist
from .metricdefs import ARRIVAL_FIELDS, SESSION_FIELDS
from .metrics import SessionResult

SCHEMA_VERSION = 2

RUN_META = "run.json"
SESSIONS = "sessions.jsonl"
SESSIONS_BIN = "sessions.bin"
WORDS = "words.bin"
WORDS_CSV = "words.csv"  # schema 1
TURNS = "turns.bin"
SEND_LAG = "send_lag.bin"
SEND_LAG_HIST = "send_lag_hist.bin"
GPU = "gpu.csv"
SERVER = "server.csv"
SERVER_METRICS = "server_metrics.csv"

SESSION_COLUMNS = (
    "session_id", "worker", "target", "sample", "speed", "started_at", "ended_at", "outcome", "error", "close_code",
    *SESSION_FIELDS, "audio_s",  # SESSION_FIELDS: the per-session latency metrics (yapbench.metricdefs)
    "frames_planned", "frames_sent", "steps", "words", "send_lag_p50_ms", "send_lag_p99_ms", "send_lag_max_ms",
    "transcript", "end_of_turn_signal", "turns", "due_at", *ARRIVAL_FIELDS,
)
# JSON types of the session columns (None allowed where a value was not observed).
SESSION_TYPES: dict[str, type] = {
    "session_id": str, "worker": str, "target": str, "sample": str, "speed": float, "started_at": float,
    "ended_at": float, "outcome": str, "error": str, "close_code": int, **dict.fromkeys(SESSION_FIELDS, float),
    "audio_s": float, "frames_planned": int, "frames_sent": int, "steps": int, "words": int,
    "send_lag_p50_ms": float, "send_lag_p99_ms": float, "send_lag_max_ms": float, "transcript": str,
    "end_of_turn_signal": bool, "turns": list,  # conversations only
    # open loop only (docs/open-loop.md); sessions.bin leaves them out
    "due_at": float, **dict.fromkeys(ARRIVAL_FIELDS, float),
}
# One record per session line, written just before it: what a reader of millions of sessions needs without
# decoding JSON. Strings are 8-byte hashes (string_hash; 0 for null): the first line with a hash gives its text.
SESSION_BIN_DTYPE = np.dtype([
    ("offset", "<u8"), ("length", "<u4"), ("started_at", "<f8"), ("ended_at", "<f8"), ("audio_s", "<f8"),
    *((f, "<f8") for f in SESSION_FIELDS), ("words", "<u4"), ("target", "<u8"), ("sample", "<u8"),
    ("outcome", "<u8"), ("transcript", "<u8"),
])
SESSION_BIN_STRINGS = ("target", "sample", "outcome", "transcript")


def fields_of(dtype: np.dtype) -> tuple[str, ...]:
    """A record dtype's field names (numpy types them as optional: a plain dtype has none)."""
    if dtype.names is None:
        raise TypeError(f"{dtype} is not a record dtype")
    return dtype.names


def string_hash(value: str | None) -> int:
    """sessions.bin's hash of a string: the first 8 bytes of its BLAKE2b digest, little-endian; 0 for null."""
    if value is None:
        return 0
    return int.from_bytes(hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest(), "little") or 1


# A word's text is not stored: it is token `idx` of its session's transcript. stop_time/end_lag_ms are NaN
# when no EndWord came. t: arrival, seconds after the session's started_at (float32 keeps 10 us over hours).
WORD_DTYPE = np.dtype([("session", "<u4"), ("idx", "<u4"), ("t", "<f4"), ("start_time", "<f4"),
                       ("stop_time", "<f4"), ("lag_ms", "<f4"), ("end_lag_ms", "<f4")])
# A conversation's turn (metrics.TurnTiming): its session's `turns` list, in columns the report reads without
# decoding JSON. Times NaN where not observed; start_s/end_s are seconds after the session's started_at.
TURN_DTYPE = np.dtype([("session", "<u4"), ("idx", "<u2"), ("end_of_turn_signal", "u1"), ("start_s", "<f4"),
                       ("end_s", "<f4"), ("speech_s", "<f4"), ("pause_after_s", "<f4"), ("words", "<u4"),
                       ("first_word_ms", "<f4"), ("end_ms", "<f4"), ("end_of_turn_ms", "<f4"),
                       ("false_end_of_turn", "<u2"), ("flush_ms", "<f4")])
WORD_CSV_COLUMNS = ("session_id", "idx", "text", "start_time", "stop_time", "recv_ms", "lag_ms", "end_lag_ms", "t")
SEND_LAG_DTYPE = np.dtype([("t", "<f8"), ("lag_ms", "<f4")])  # t: epoch seconds of the send
# Frames whose send fell in second `t` (epoch) and whose lag fell in loghist bucket `bucket`: `count`.
SEND_LAG_HIST_DTYPE = np.dtype([("t", "<u4"), ("bucket", "<u2"), ("count", "<u4")])
# host: the machine the GPU is in (GPU 0 of two provisioned hosts is two GPUs).
GPU_COLUMNS = ("t", "host", "gpu", "name", "util_pct", "mem_used_mib", "mem_total_mib", "power_w", "temp_c",
               "sm_clock_mhz")
SERVER_COLUMNS = ("t", "target", "used_slots", "total_slots")
# Column types for readers of the CSV files.
GPU_DTYPES = {"t": "float64", "host": "string", "gpu": "int64", "name": "string", "util_pct": "float64",
              "mem_used_mib": "float64", "mem_total_mib": "float64", "power_w": "float64", "temp_c": "float64",
              "sm_clock_mhz": "float64"}
SERVER_DTYPES = {"t": "float64", "target": "string", "used_slots": "float64", "total_slots": "float64"}
# Columns a file written by an older yapbench may lack, and the value they read as.
GPU_ADDED: dict[str, object] = {"host": ""}  # gpu.csv before the host column: every GPU on one host
# the servers' Prometheus /metrics per scrape interval (yapbench.servermetrics, docs/telemetry.md)
SERVER_METRICS_COLUMNS = ("t", "target", "open_channels", "connects", "steps", "step_mean_ms", "step_p50_ms",
                          "step_p99_ms", "slow_steps", "closed", "closed_mean_steps")
SERVER_METRICS_DTYPES = {c: "string" if c == "target" else "float64" for c in SERVER_METRICS_COLUMNS}

# Raw lags beyond this many frames (~300 MB) are only counted in the histogram: a one-hour run at 10,000 streams
# sends 450 M frames. Below it, send-lag percentiles are exact.
SEND_LAG_RAW_LIMIT = 25_000_000
RAW_CAPPED_KEY = "send_lag_raw_capped"  # run.json: true once the raw file stopped growing
HIST_FLUSH_S = 10.0  # the histogram is accumulated in memory and appended this often (and at close)


def new_run_id(prefix: str = "run") -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"


def default_run_dir(root: str | Path = "reports") -> Path:
    return Path(root) / new_run_id()


Batch = tuple[dict, bytes, bytes]  # one session: record, WORD_DTYPE bytes (session 0), SEND_LAG_DTYPE bytes


def rows_of(result: SessionResult) -> Batch:
    """A finished session as its records (plain data: they cross process boundaries as is). The words' `session`
    field is filled by the writer, which alone knows the session's line."""
    words = np.zeros(len(result.words), dtype=WORD_DTYPE)
    if result.words:
        words["idx"] = np.arange(len(result.words))
        t0 = result.send_times[0] if result.send_times.size else result.started_at
        nan = float("nan")
        words["t"] = [t0 - result.started_at + w.recv_ms / 1000.0 for w in result.words]
        words["start_time"] = [w.start_time for w in result.words]
        words["stop_time"] = [nan if w.stop_time is None else w.stop_time for w in result.words]
        words["lag_ms"] = [w.lag_ms for w in result.words]
        words["end_lag_ms"] = [nan if w.end_lag_ms is None else w.end_lag_ms for w in result.words]
    lag = np.empty(result.send_lag_ms.size, dtype=SEND_LAG_DTYPE)
    lag["t"] = result.send_times[: lag.size]
    lag["lag_ms"] = result.send_lag_ms
    return result.record(), words.tobytes(), lag.tobytes()


def word_values(words: bytes, field: str) -> np.ndarray:
    """One field (`lag_ms`, `end_lag_ms`) of one session's word records (for live statistics)."""
    return np.frombuffer(words, dtype=WORD_DTYPE)[field]


def send_lags(send_lag: bytes) -> np.ndarray:
    return np.frombuffer(send_lag, dtype=SEND_LAG_DTYPE)["lag_ms"]


class RunLog:
    """Appends records to a run directory; safe to call from several greenlets or threads."""

    def __init__(self, run_dir: str | Path) -> None:
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.sessions_written = _complete_lines(self.dir / SESSIONS)  # words refer to sessions by line
        self._sessions = open(self.dir / SESSIONS, "ab")
        self._sessions_bin = open(self.dir / SESSIONS_BIN, "ab")
        self._words = open(self.dir / WORDS, "ab")
        self._turns: io.BufferedWriter | None = None  # opened with the first conversation's turns
        self._send_lag = open(self.dir / SEND_LAG, "ab")
        self._hist = open(self.dir / SEND_LAG_HIST, "ab")
        self.raw_lags = self._send_lag.tell() // SEND_LAG_DTYPE.itemsize
        self.raw_capped = raw_capped(read_meta(self.dir)) if (self.dir / RUN_META).exists() else False
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []  # histogram keys and counts not yet written
        self._last_hist_flush = time.monotonic()

    def write_meta(self, meta: dict) -> None:
        """run.json, replaced atomically (written at start, completed at the end)."""
        path = self.dir / RUN_META
        base = read_meta(self.dir) if path.exists() else {}
        base.update(meta)
        base["schema"] = SCHEMA_VERSION
        base.setdefault("run_id", self.dir.name)
        base.setdefault("generator_host", socket.gethostname())
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(base, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    def write_result(self, result: SessionResult) -> None:
        self.append([rows_of(result)])

    def append(self, batch: Iterable[Batch]) -> None:
        """Write several sessions' records (e.g. a batch a worker shipped to the master)."""
        items = list(batch)
        if not items:
            return
        lines = [(json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8") for record, _, _ in items]
        numbers = session_numbers([record for record, _, _ in items], [len(line) for line in lines])
        words = np.frombuffer(b"".join(w for _, w, _ in items), dtype=WORD_DTYPE).copy()
        per_session = [len(w) // WORD_DTYPE.itemsize for _, w, _ in items]
        lags = b"".join(lag for _, _, lag in items)
        turns = turn_records([record for record, _, _ in items])
        with self._lock:
            first = self.sessions_written
            words["session"] = np.repeat(np.arange(first, first + len(items), dtype=np.uint32), per_session)
            # Words, turns and lags first: a session line is the commit record that says they are complete.
            self._words.write(words.tobytes())
            self._words.flush()
            if turns.size:
                turns["session"] += first
                if self._turns is None:
                    self._turns = open(self.dir / TURNS, "ab")
                self._turns.write(turns.tobytes())
                self._turns.flush()
            self._append_lags(lags)
            numbers["offset"] += self._sessions.tell()
            self._sessions_bin.write(numbers.tobytes())
            self._sessions_bin.flush()
            self._sessions.write(b"".join(lines))
            self._sessions.flush()
            self.sessions_written += len(items)

    def _append_lags(self, lags: bytes) -> None:
        if not lags:
            return
        rec = np.frombuffer(lags, dtype=SEND_LAG_DTYPE)
        if not self.raw_capped:
            if self.raw_lags + rec.size <= SEND_LAG_RAW_LIMIT:
                self._send_lag.write(lags)
                self._send_lag.flush()
                self.raw_lags += rec.size
            else:
                self.raw_capped = True
                self.write_meta({RAW_CAPPED_KEY: True})
        keys = rec["t"].astype(np.int64) * loghist.BUCKETS + loghist.bucket_of(rec["lag_ms"])
        self._pending.append(np.unique(keys, return_counts=True))
        if time.monotonic() - self._last_hist_flush >= HIST_FLUSH_S:
            self._flush_hist()

    def _flush_hist(self) -> None:
        self._last_hist_flush = time.monotonic()
        if not self._pending:
            return
        keys = np.concatenate([k for k, _ in self._pending])
        counts = np.concatenate([c for _, c in self._pending])
        self._pending = []
        uniq, inverse = np.unique(keys, return_inverse=True)
        out = np.empty(uniq.size, dtype=SEND_LAG_HIST_DTYPE)
        out["t"], out["bucket"] = np.divmod(uniq, loghist.BUCKETS)
        out["count"] = np.bincount(inverse, weights=counts).astype(np.uint32)
        self._hist.write(out.tobytes())
        self._hist.flush()

    def close(self) -> None:
        with self._lock:
            if not self._hist.closed:
                self._flush_hist()
            for f in (self._sessions, self._sessions_bin, self._words, self._send_lag, self._hist, self._turns):
                if f is not None and not f.closed:
                    f.close()


def session_numbers(records: list[dict], lengths: list[int]) -> np.ndarray:
    """SESSION_BIN_DTYPE records of consecutive session lines (offsets from the first line's start)."""
    out = np.zeros(len(records), dtype=SESSION_BIN_DTYPE)
    out["length"] = lengths
    out["offset"] = np.cumsum(lengths) - out["length"]
    nan = float("nan")
    for name in fields_of(SESSION_BIN_DTYPE)[2:]:
        if name in SESSION_BIN_STRINGS:
            out[name] = [string_hash(r.get(name)) for r in records]
        else:
            out[name] = [nan if r.get(name) is None else r[name] for r in records] if name != "words" else \
                [r.get(name) or 0 for r in records]
    return out


def turn_records(records: list[dict]) -> np.ndarray:
    """TURN_DTYPE records of consecutive session lines' turns (`session` counted from the first of them)."""
    rows = [(i, k, bool(r.get("end_of_turn_signal")), t)
            for i, r in enumerate(records) for k, t in enumerate(r.get("turns") or ())]
    out = np.zeros(len(rows), dtype=TURN_DTYPE)
    if not rows:
        return out
    out["session"], out["idx"], out["end_of_turn_signal"] = zip(*((i, k, signal) for i, k, signal, _ in rows))
    nan = float("nan")
    for name in fields_of(TURN_DTYPE)[3:]:
        out[name] = [nan if t.get(name) is None else t[name] for *_, t in rows]
    return out


def read_turns(run_dir: str | Path, lines: int) -> np.ndarray:
    """turns.bin's records of the first `lines` session lines (those read): a killed writer's turns past the last
    complete line are dropped. Empty when the run had no conversation."""
    turns = _read_records(Path(run_dir) / TURNS, TURN_DTYPE)
    return turns[turns["session"] < lines]


def read_session_numbers(run_dir: str | Path) -> np.ndarray | None:
    """sessions.bin's records of the complete session lines, None where the run has no sessions.bin."""
    d = Path(run_dir)
    if not (d / SESSIONS_BIN).exists():
        return None
    rec = _read_records(d / SESSIONS_BIN, SESSION_BIN_DTYPE)
    size = (d / SESSIONS).stat().st_size
    return rec[: int(np.searchsorted(rec["offset"] + rec["length"], size, side="right"))]


def session_strings(run_dir: str | Path, numbers: np.ndarray, column: str) -> tuple[np.ndarray, list]:
    """A string column of sessions.bin as (codes, categories): each distinct hash read once, from its first line."""
    hashes = numbers[column]
    uniq, first, codes = np.unique(hashes, return_index=True, return_inverse=True)
    categories: list = []
    with open(Path(run_dir) / SESSIONS, "rb") as f:
        for h, i in zip(uniq.tolist(), first.tolist()):
            if h == 0:
                categories.append(None)
                continue
            f.seek(int(numbers["offset"][i]))
            line = f.read(int(numbers["length"][i]))
            try:
                value = json.loads(line)[column]
                if string_hash(value) != h:
                    raise ValueError(f"{column} {value!r} does not have the hash recorded")
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{SESSIONS} line {i + 1} (byte {int(numbers['offset'][i])}) does not match "
                                 f"{SESSIONS_BIN} ({exc}): if sessions.jsonl was edited, remove {SESSIONS_BIN} and the "
                                 "JSON lines are read alone") from None
            categories.append(value)
    return codes.reshape(-1), categories


def _complete_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def read_meta(run_dir: str | Path) -> dict:
    path = Path(run_dir) / RUN_META
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def schema_of(meta: dict) -> int:
    """The layout a run directory follows: run.json's `schema`, 1 for directories written before it existed."""
    return int(meta.get("schema", 1))


SESSION_CHUNK_BYTES = 64 << 20  # decoded at a time (~80,000 lines): bounds the Python objects alive at once


def iter_session_records(run_dir: str | Path) -> Iterator[list[dict]]:
    """Complete session lines in chunks of dicts, in file order; a torn last line (the writer was killed mid-line)
    is skipped. Decoded by msgspec, about four times faster than the json module: a one-hour run has millions."""
    path = Path(run_dir) / SESSIONS
    decoder = msgspec.json.Decoder(list[dict])
    with open(path, "rb") as f:
        for start, end in session_blocks(run_dir):
            f.seek(start)
            yield _decode_lines(path, f.read(end - start), decoder, start)


def read_session_records(run_dir: str | Path) -> list[dict]:
    """All complete session lines (iter_session_records)."""
    return [r for chunk in iter_session_records(run_dir) for r in chunk]


def session_blocks(run_dir: str | Path, block_bytes: int | None = None) -> list[tuple[int, int]]:
    """Byte ranges of sessions.jsonl, each whole lines, together every complete line (a torn last one is not)."""
    block_bytes = block_bytes or SESSION_CHUNK_BYTES
    path = Path(run_dir) / SESSIONS
    size = path.stat().st_size
    with open(path, "rb") as f:
        f.seek(max(size - (1 << 20), 0))
        tail = f.read()
        end = size - len(tail) + tail.rfind(b"\n") + 1 if b"\n" in tail else 0
        starts = [0]
        while starts[-1] + block_bytes < end:
            f.seek(starts[-1] + block_bytes)
            f.readline()
            starts.append(min(f.tell(), end))
    return [(a, b) for a, b in zip(starts, starts[1:] + [end]) if b > a]


def decode_session_block(run_dir: str | Path, start: int, end: int, columns: Sequence[str]) -> list[list]:
    """One block of session_blocks as one list of values per column (None where absent or null): decoded straight
    into these columns, without a dict per line, for readers of millions of sessions."""
    path = Path(run_dir) / SESSIONS
    struct = msgspec.defstruct("SessionColumns", [(c, SESSION_TYPES[c] | None, None) for c in columns])
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    records = _decode_lines(path, data, msgspec.json.Decoder(GenericAlias(list, (struct,))), start)  # list[struct]
    return [list(c) for c in zip(*map(msgspec.structs.astuple, records))] if records else [[] for _ in columns]


def _decode_lines(path: Path, lines: bytes, decoder: msgspec.json.Decoder, offset: int) -> list:
    """Whole lines decoded as one JSON array (the newlines become commas: one C call); errors name the line."""
    try:
        return decoder.decode(b"[" + lines[:-1].replace(b"\n", b",") + b"]")
    except msgspec.DecodeError as exc:
        with open(path, "rb") as f:
            before = f.read(offset).count(b"\n")
        for i, line in enumerate(lines.splitlines()):  # the slow path, only to name the line
            try:
                json.loads(line)
            except json.JSONDecodeError as bad:
                raise ValueError(f"{path} line {before + i + 1}: not valid JSON ({bad})") from None
        raise ValueError(f"{path} after line {before}: {exc}") from None


def _read_records(path: Path, dtype: np.dtype) -> np.ndarray:
    """Whole records of a binary file (a torn last record is dropped); empty when the file is absent."""
    if not path.exists():
        return np.zeros(0, dtype=dtype)
    n = path.stat().st_size // dtype.itemsize
    return np.fromfile(path, dtype=dtype, count=n)


def read_send_lag(run_dir: str | Path) -> np.ndarray:
    """The raw per-frame lags (SEND_LAG_DTYPE); all of them unless `raw_capped(meta)`."""
    return _read_records(Path(run_dir) / SEND_LAG, SEND_LAG_DTYPE)


def raw_capped(meta: dict) -> bool:
    return bool(meta.get(RAW_CAPPED_KEY))


def read_send_lag_hist(run_dir: str | Path) -> np.ndarray:
    """SEND_LAG_HIST_DTYPE records as written (one (t, bucket) may appear in several: add their counts)."""
    return _read_records(Path(run_dir) / SEND_LAG_HIST, SEND_LAG_HIST_DTYPE)


@dataclass
class Words:
    """The columns of words the report uses, one entry per Word."""

    line: np.ndarray  # uint32: the session's line in sessions.jsonl
    t: np.ndarray  # float32: arrival, seconds after the reader's t0 (a float64 epoch would need 720 MB more)
    lag_ms: np.ndarray  # float32
    end_lag_ms: np.ndarray  # float32, NaN without EndWord


def _no_words() -> Words:
    return Words(np.zeros(0, np.uint32), np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32))


WORD_CHUNK = 4_000_000  # records mapped at a time: bounds the file pages this process maps at once (~110 MB)


def read_words(run_dir: str | Path, session_ids: Sequence[str], started_at: np.ndarray, t0: float = 0.0) -> Words:
    """Words of the sessions whose lines were read (`session_ids`/`started_at` indexed by line), in line order
    (each session's words together, as written); words of a session whose line never came (killed mid-session)
    are dropped. Reads words.bin, or schema 1's words.csv."""
    d = Path(run_dir)
    if not (d / WORDS).exists() and (d / WORDS_CSV).exists():
        return _read_words_csv(d / WORDS_CSV, session_ids, t0)
    path = d / WORDS
    total = path.stat().st_size // WORD_DTYPE.itemsize if path.exists() else 0
    if not total:
        return _no_words()
    line = np.empty(total, np.uint32)
    t = np.empty(total, np.float32)
    lag = np.empty(total, np.float32)
    end = np.empty(total, np.float32)
    starts = np.asarray(started_at, dtype=np.float64) - t0
    n = 0
    while n < total:
        # Mapped, not read: each column is copied straight from the page cache (half the CPU of reading records
        # into a buffer first), and unmapped before the next chunk, so mapped pages never pile up in the RSS.
        chunk: np.ndarray = np.memmap(path, dtype=WORD_DTYPE, mode="r", offset=n * WORD_DTYPE.itemsize,
                                      shape=(min(WORD_CHUNK, total - n),))
        keep = chunk["session"] < len(starts)
        complete = bool(keep.all())
        if not complete:
            chunk = chunk[keep]
        m = n + chunk.size
        line[n:m] = chunk["session"]
        t[n:m] = starts[line[n:m]] + chunk["t"]
        lag[n:m] = chunk["lag_ms"]
        end[n:m] = chunk["end_lag_ms"]
        n = m
        del chunk
        if not complete:
            break  # the words past the last complete session line: a killed writer's
    return Words(line[:n], t[:n], lag[:n], end[:n])


def _read_words_csv(path: Path, session_ids: Sequence[str], t0: float) -> Words:
    import pandas as pd

    if path.stat().st_size == 0:
        return _no_words()
    dtypes = {"session_id": "category", "lag_ms": "float32", "end_lag_ms": "float32", "t": "float64"}
    try:
        raw = pd.read_csv(_without_torn_line(path), usecols=list(dtypes), dtype=dtypes, engine="c")
    except (ValueError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path}: cannot be read as {WORDS_CSV} ({exc})") from None
    codes = raw["session_id"].cat.codes.to_numpy()
    # Category -> line of its session (or -1), then word -> line through the category codes: no per-row Python.
    cat_lines = pd.Index(session_ids).get_indexer(raw["session_id"].cat.categories)
    line = np.where(codes >= 0, cat_lines[codes], -1)
    found = np.flatnonzero(line >= 0)
    keep = found[np.argsort(line[found], kind="stable")]  # in line order, as words.bin is written
    return Words(line[keep].astype(np.uint32), (raw["t"].to_numpy()[keep] - t0).astype(np.float32),
                 raw["lag_ms"].to_numpy()[keep],
                 raw["end_lag_ms"].to_numpy()[keep])


def _without_torn_line(path: Path) -> Path | io.BytesIO:
    """The file itself, or its bytes up to the last newline when the last line is torn."""
    with open(path, "rb") as f:
        f.seek(-1, io.SEEK_END)
        if f.read(1) == b"\n":
            return path
        f.seek(0)
        data = f.read()
    return io.BytesIO(data[: data.rfind(b"\n") + 1])


def read_csv(path: Path, dtypes: dict[str, str], added: dict[str, object] | None = None):
    """A CSV file of the run directory (gpu.csv, server.csv) as a DataFrame, None when absent or empty; `added`:
    columns newer than some files, filled with their value there. Raises ValueError naming the file when it cannot
    be read or lacks a column."""
    import pandas as pd

    if not path.exists() or path.stat().st_size == 0:
        return None
    try:
        df = pd.read_csv(_without_torn_line(path), dtype=dtypes)
    except (ValueError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path.name} ignored: {exc}") from None
    for column, value in (added or {}).items():
        if column not in df.columns:
            df[column] = pd.Series(value, index=df.index, dtype=dtypes[column])
    missing = [c for c in dtypes if c not in df.columns]
    if missing:
        raise ValueError(f"{path.name} ignored: missing column(s) {', '.join(missing)}")
    return df
