"""The run-directory format: docs/run-directory.md agrees with yapbench.runlog, and the writer writes what it says."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from yapbench import loghist, runlog
from yapbench.metrics import SessionResult, WordTiming
from yapbench.report.synthetic import Spec, make_run

DOC = Path(__file__).resolve().parent.parent / "docs" / "run-directory.md"


def doc_sections() -> dict[str, list[list[str]]]:
    """### `file` heading -> rows of the first table under it (cells with backticks stripped, header dropped)."""
    out: dict[str, list[list[str]]] = {}
    current = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"### `([^`]+)`", line)
        if heading:
            current = heading.group(1)
            out[current] = []
        elif current and line.startswith("|") and not line.startswith("| ---"):
            out[current].append([c.strip().strip("`") for c in line.strip("|").split("|")])
    return {name: rows[1:] for name, rows in out.items()}


COLUMNS = {
    runlog.SESSIONS: runlog.SESSION_COLUMNS,
    runlog.SESSIONS_BIN: runlog.SESSION_BIN_DTYPE.names,
    runlog.WORDS: runlog.WORD_DTYPE.names,
    runlog.TURNS: runlog.TURN_DTYPE.names,
    runlog.SEND_LAG: runlog.SEND_LAG_DTYPE.names,
    runlog.SEND_LAG_HIST: runlog.SEND_LAG_HIST_DTYPE.names,
    runlog.GPU: runlog.GPU_COLUMNS,
    runlog.SERVER: runlog.SERVER_COLUMNS,
    runlog.SERVER_METRICS: runlog.SERVER_METRICS_COLUMNS,
    runlog.WORDS_CSV: runlog.WORD_CSV_COLUMNS,
}
BINARY = {runlog.SESSIONS_BIN: runlog.SESSION_BIN_DTYPE, runlog.WORDS: runlog.WORD_DTYPE,
          runlog.TURNS: runlog.TURN_DTYPE,
          runlog.SEND_LAG: runlog.SEND_LAG_DTYPE, runlog.SEND_LAG_HIST: runlog.SEND_LAG_HIST_DTYPE}


def test_doc_lists_every_file_with_the_modules_columns() -> None:
    sections = doc_sections()
    assert set(sections) == set(COLUMNS)
    for name, columns in COLUMNS.items():
        assert tuple(row[0] for row in sections[name]) == tuple(columns), name


def test_doc_gives_the_binary_types() -> None:
    sections = doc_sections()
    for name, dtype in BINARY.items():
        assert dtype.isnative or dtype.byteorder in "<|="
        assert {row[0]: row[1] for row in sections[name]} == {f: str(dtype[f]) for f in dtype.names}, name


def test_doc_states_the_schema_version_and_the_histogram_buckets() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert f"Current schema: **{runlog.SCHEMA_VERSION}**" in text
    assert f"the last bucket ({loghist.BUCKETS - 1:,})" in text
    assert f"{runlog.SEND_LAG_RAW_LIMIT // 1_000_000} million frames" in text
    assert f"last {runlog.HIST_FLUSH_S:g} s" in text


def test_session_records_have_the_documented_columns() -> None:
    assert tuple(SessionResult("s", "ws://h:1", "a.wav", 1.0, 0.0).record()) == runlog.SESSION_COLUMNS


def test_writer_output_follows_the_format(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", Spec(sessions=50, seed=9))
    meta = json.loads((run / runlog.RUN_META).read_text())
    assert meta["schema"] == runlog.SCHEMA_VERSION
    lines = (run / runlog.SESSIONS).read_text().splitlines()
    assert all(tuple(json.loads(line)) == runlog.SESSION_COLUMNS for line in lines)
    words = np.fromfile(run / runlog.WORDS, dtype=runlog.WORD_DTYPE)
    per_session = np.bincount(words["session"], minlength=len(lines))
    assert per_session.tolist() == [json.loads(line)["words"] for line in lines]
    for w in words[:20]:  # the text is token idx of the transcript
        assert json.loads(lines[w["session"]])["transcript"].split()[w["idx"]]
    numbers = np.fromfile(run / runlog.SESSIONS_BIN, dtype=runlog.SESSION_BIN_DTYPE)
    data = (run / runlog.SESSIONS).read_bytes()
    for n, line in zip(numbers, lines):  # each record points at its line and holds its numbers and hashes
        record = json.loads(data[n["offset"]: n["offset"] + n["length"]])
        assert record == json.loads(line)
        assert n["started_at"] == record["started_at"] and n["words"] == record["words"]
        assert n["outcome"] == runlog.string_hash(record["outcome"]) != 0
        assert (n["first_word_ms"] == record["first_word_ms"]) or (np.isnan(n["first_word_ms"])
                                                                   and record["first_word_ms"] is None)
    lags = np.fromfile(run / runlog.SEND_LAG, dtype=runlog.SEND_LAG_DTYPE)
    hist = np.fromfile(run / runlog.SEND_LAG_HIST, dtype=runlog.SEND_LAG_HIST_DTYPE)
    assert hist["count"].sum() == lags.size == sum(json.loads(line)["frames_sent"] for line in lines)
    # Same counts per (second, bucket) as bucketing the raw values.
    want = np.unique(lags["t"].astype(np.int64) * loghist.BUCKETS + loghist.bucket_of(lags["lag_ms"]),
                     return_counts=True)
    got_keys = hist["t"].astype(np.int64) * loghist.BUCKETS + hist["bucket"]
    got = np.bincount(np.searchsorted(want[0], got_keys), weights=hist["count"], minlength=want[0].size)
    assert np.isin(got_keys, want[0]).all() and got.tolist() == want[1].tolist()


def test_reopened_writer_keeps_numbering_sessions(tmp_path: Path) -> None:
    """Words refer to their session by line: a writer that appends to an existing directory continues the count."""
    first = make_run(tmp_path / "run", Spec(sessions=10, seed=1, gpu=False, server_poll=False))
    log = runlog.RunLog(first)
    assert log.sessions_written == 10
    res = SessionResult("late", "ws://h:1", "a.wav", 1.0, 1.7e9)
    res.words = [WordTiming("hi", 0.1, 300.0, 250.0)]
    log.write_result(res)
    log.close()
    words = np.fromfile(first / runlog.WORDS, dtype=runlog.WORD_DTYPE)
    assert words["session"][-1] == 10


@pytest.mark.parametrize("value,bucket_value", [(0.0, 0.0), (10.0, None), (250.0, None), (-0.5, 0.0)])
def test_histogram_buckets_are_within_one_percent(value: float, bucket_value: float | None) -> None:
    k = loghist.bucket_of(np.array([value]))[0]
    if bucket_value is not None:
        assert loghist.VALUES[k] == bucket_value
    else:
        assert abs(loghist.VALUES[k] / value - 1) <= loghist.RELATIVE_ERROR + 1e-12
    if value == 10.0:  # 10 ms is an edge: "later than 10 ms" is an exact count
        assert loghist.EDGES[k - 1] == pytest.approx(10.0, rel=1e-12)


def test_sessions_read_in_blocks_and_in_parallel_give_the_same_summary(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Large sessions.jsonl files are cut into blocks of whole lines, decoded by a pool of processes."""
    from yapbench.report import summarize_run

    run = make_run(tmp_path / "run", Spec(sessions=300, targets=("ws://a:1", "ws://b:2"), seed=12))
    with open(run / runlog.SESSIONS, "a") as f:
        f.write('{"session_id": "torn", "outc')
    whole = summarize_run(run)
    monkeypatch.setattr(runlog, "SESSION_CHUNK_BYTES", 4096)
    blocks = runlog.session_blocks(run)
    assert len(blocks) > 20 and blocks[0][0] == 0
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
    data = (run / runlog.SESSIONS).read_bytes()
    assert blocks[-1][1] == data.rfind(b"\n") + 1 and all(data[e - 1:e] == b"\n" for _, e in blocks)
    assert len(runlog.read_session_records(run)) == 300
    assert summarize_run(run) == whole


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_values_on_and_beside_every_edge_fall_in_their_own_bucket(dtype: type) -> None:
    """Bucket k >= 1 holds [EDGES[k-1], EDGES[k]): checked at each edge and the next value either side of it."""
    edges = loghist.EDGES.astype(dtype)
    values = np.concatenate((edges, np.nextafter(edges, dtype(0)), np.nextafter(edges, dtype(np.inf)),
                             np.array([0.0, -1.0, 1e-9, 4e6, np.inf], dtype=dtype)))
    want = np.searchsorted(loghist.EDGES, values.astype(np.float64), side="right")
    assert (loghist.bucket_of(values) == np.minimum(want, loghist.BUCKETS - 1)).all()
    assert loghist.bucket_of(np.array([np.nan, -np.inf], dtype=dtype)).tolist() == [0, 0]
