"""summary.json against numbers computed independently from the raw records (json, numpy)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from yapbench.errors import UserError
from yapbench.metrics import summarize
from yapbench.report import summarize_run
from yapbench.report.synthetic import Spec, make_run
from yapbench.runlog import SEND_LAG_DTYPE, SESSION_BIN_DTYPE, WORD_CSV_COLUMNS, WORD_DTYPE

NOT_SERVED = {"rejected", "auth_failed", "connect_failed"}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("fleet") / "run",
                    Spec(sessions=300, targets=("ws://10.0.0.1:8080", "ws://10.0.0.2:8080"), rejected=0.1,
                         failed=0.1, seed=3))


def raw(run: Path) -> tuple[list[dict], list[dict], np.ndarray]:
    sessions = [json.loads(line) for line in (run / "sessions.jsonl").read_text().splitlines()]
    records = np.frombuffer((run / "words.bin").read_bytes(), dtype=WORD_DTYPE)
    words = [{"session_id": sessions[w["session"]]["session_id"], "idx": int(w["idx"]),
              "t": sessions[w["session"]]["started_at"] + float(w["t"]), "lag_ms": float(w["lag_ms"]),
              "end_lag_ms": None if np.isnan(w["end_lag_ms"]) else float(w["end_lag_ms"])} for w in records]
    lags = np.frombuffer((run / "send_lag.bin").read_bytes(), dtype=SEND_LAG_DTYPE)
    return sessions, words, lags


def expected(values: list[float]) -> dict[str, float]:
    a = np.array(values, dtype=np.float64)
    return {"count": a.size, "min": a.min(), "max": a.max(), "mean": a.mean(),
            **{f"p{q}": np.percentile(a, q) for q in (50, 90, 95, 99)}}


def assert_stats(got: dict, values: list[float]) -> None:
    want = expected(values)
    assert got["count"] == want["count"]
    for k in ("min", "max", "mean", "p50", "p90", "p95", "p99"):
        assert got[k] == pytest.approx(want[k], rel=1e-9), k


def test_percentiles_match_raw_records(fleet: Path) -> None:
    summary = summarize_run(fleet)
    sessions, words, lags = raw(fleet)
    served = [s for s in sessions if s["outcome"] not in NOT_SERVED]
    for key in ("connect", "ready", "first_response", "first_word", "finalize", "backlog_max"):
        assert_stats(summary[key], [s[f"{key}_ms"] for s in served if s[f"{key}_ms"] is not None])
    assert_stats(summary["word_lag"], [float(w["lag_ms"]) for w in words])
    assert_stats(summary["end_lag"], [w["end_lag_ms"] for w in words if w["end_lag_ms"] is not None])
    assert_stats(summary["send_lag"], lags["lag_ms"].astype(np.float64).tolist())


def test_counts_rates_throughput(fleet: Path) -> None:
    summary = summarize_run(fleet)
    sessions, words, _ = raw(fleet)
    n = len(sessions)
    outcomes = [s["outcome"] for s in sessions]
    assert summary["sessions"] == n
    for o in set(outcomes):
        assert summary["outcomes"][o] == outcomes.count(o)
    assert summary["outcomes"]["protocol_error"] == 0  # every known outcome is present, zero or not
    assert summary["rejection_rate"] == pytest.approx(outcomes.count("rejected") / n)
    assert summary["ok_rate"] == pytest.approx(outcomes.count("ok") / n)
    assert summary["error_rate"] == pytest.approx(sum(o not in ("ok", "rejected", "cancelled") for o in outcomes) / n)
    assert summary["rejection_rate"] > 0 and summary["error_rate"] > 0
    assert summary["outcomes"]["cancelled"] > 0  # stopped by the load: not an error
    assert summary["duration_s"] == pytest.approx(60.0)
    assert summary["throughput"]["sessions_per_s"] == pytest.approx(n / 60.0)
    assert summary["throughput"]["audio_s_per_s"] == pytest.approx(sum(s["audio_s"] for s in sessions) / 60.0)
    assert summary["throughput"]["words_per_s"] == pytest.approx(len(words) / 60.0)
    assert summary["generator_overloaded"] is False


def test_per_target_sub_summaries(fleet: Path) -> None:
    summary = summarize_run(fleet)
    sessions, words, _ = raw(fleet)
    target_of = {s["session_id"]: s["target"] for s in sessions}
    assert set(summary["targets"]) == {"ws://10.0.0.1:8080", "ws://10.0.0.2:8080"}
    for target, sub in summary["targets"].items():
        mine = [s for s in sessions if s["target"] == target]
        assert sub["sessions"] == len(mine)
        served = [s for s in mine if s["outcome"] not in NOT_SERVED]
        assert_stats(sub["first_word"], [s["first_word_ms"] for s in served if s["first_word_ms"] is not None])
        assert_stats(sub["word_lag"], [float(w["lag_ms"]) for w in words if target_of[w["session_id"]] == target])
    assert sum(sub["sessions"] for sub in summary["targets"].values()) == summary["sessions"]


def test_time_window_keeps_sessions_started_in_it(fleet: Path) -> None:
    t0 = json.loads((fleet / "run.json").read_text())["started_at"]
    since, until = t0 + 10, t0 + 30
    summary = summarize_run(fleet, since=since, until=until)
    sessions, words, lags = raw(fleet)
    mine = [s for s in sessions if since <= s["started_at"] < until]
    ids = {s["session_id"] for s in mine}
    assert summary["sessions"] == len(mine)
    assert summary["duration_s"] == pytest.approx(20.0)
    assert_stats(summary["word_lag"], [float(w["lag_ms"]) for w in words if w["session_id"] in ids])
    in_window = lags[(lags["t"] >= since) & (lags["t"] < until)]
    assert summary["send_lag"]["count"] == in_window.size


def test_torn_last_lines_are_tolerated(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", Spec(sessions=40, seed=5))
    before = summarize_run(run)
    # A kill -9 mid-write: a word of a session whose line never came, half a word record, half a session line,
    # half a send-lag record.
    orphan = np.zeros(1, dtype=WORD_DTYPE)
    orphan["session"], orphan["lag_ms"] = before["sessions"], 1e6
    with open(run / "words.bin", "ab") as f:
        f.write(orphan.tobytes() + b"\x00" * 7)
    with open(run / "sessions.jsonl", "a") as f:
        f.write('{"session_id": "s9999999", "outcome": "o')
    with open(run / "send_lag.bin", "ab") as f:
        f.write(b"\x00" * 5)
    torn = np.zeros(1, dtype=SESSION_BIN_DTYPE)  # the torn line's numbers were written: its line is not whole
    torn["offset"], torn["length"] = (run / "sessions.jsonl").stat().st_size - 40, 400
    with open(run / "sessions.bin", "ab") as f:
        f.write(torn.tobytes() + b"\x00" * 9)
    after = summarize_run(run)
    assert after["sessions"] == before["sessions"]
    assert after["word_lag"] == before["word_lag"]
    assert after["send_lag"] == before["send_lag"]


def test_schema_1_run_directory_still_loads(tmp_path: Path) -> None:
    """A run directory written before run.json had a schema: words in words.csv, no send-lag histogram."""
    run = make_run(tmp_path / "run", Spec(sessions=60, seed=4))
    before = summarize_run(run)
    sessions, words, _ = raw(run)
    with open(run / "words.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(WORD_CSV_COLUMNS)
        for w in words:  # text and recv_ms are not read; float32 values round-trip through repr
            writer.writerow((w["session_id"], w["idx"], "word", "", "", "", np.float32(w["lag_ms"]),
                             "" if w["end_lag_ms"] is None else np.float32(w["end_lag_ms"]), repr(w["t"])))
    for name in ("words.bin", "sessions.bin", "send_lag_hist.bin"):
        (run / name).unlink()
    meta = json.loads((run / "run.json").read_text())
    del meta["schema"]
    (run / "run.json").write_text(json.dumps(meta))
    after = summarize_run(run)
    for key in ("sessions", "word_lag", "end_lag", "send_lag", "first_word", "wer"):
        assert after[key] == before[key], key
    assert after["throughput"]["words_per_s"] == before["throughput"]["words_per_s"] > 0


def test_newer_schema_is_refused_by_name(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", Spec(sessions=5, seed=4))
    meta = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps(meta | {"schema": 99}))
    with pytest.raises(UserError, match="newer yapbench.*schema 99"):
        summarize_run(run)


def test_send_lag_beyond_the_raw_limit_is_estimated_within_one_percent(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Past runlog.SEND_LAG_RAW_LIMIT frames only the histogram grows; the summary says its figures are estimates."""
    exact = summarize_run(make_run(tmp_path / "exact", Spec(sessions=200, send_lag_ms=4.0, seed=6)))
    assert exact["send_lag"]["exact"] is True and exact["estimates"] == []
    monkeypatch.setattr("yapbench.runlog.SEND_LAG_RAW_LIMIT", 1000)
    capped = make_run(tmp_path / "capped", Spec(sessions=200, send_lag_ms=4.0, seed=6))
    assert json.loads((capped / "run.json").read_text())["send_lag_raw_capped"] is True
    assert (capped / "send_lag.bin").stat().st_size <= 1000 * SEND_LAG_DTYPE.itemsize
    est = summarize_run(capped)
    assert est["send_lag"]["exact"] is False and est["estimates"] == ["send_lag"]
    assert est["send_lag"]["count"] == exact["send_lag"]["count"]  # counts are exact
    for k in ("p50", "p90", "p95", "p99", "max", "mean"):
        assert est["send_lag"][k] == pytest.approx(exact["send_lag"][k], rel=0.01), k
    assert est["word_lag"] == exact["word_lag"]  # words stay exact


def test_generator_overload_is_flagged(tmp_path: Path) -> None:
    summary = summarize_run(make_run(tmp_path / "run", Spec(sessions=30, send_lag_ms=25.0, seed=2)))
    assert summary["send_lag"]["p99"] > 10
    assert summary["generator_overloaded"] is True


def test_all_rejected_run_has_no_latencies_but_a_summary(tmp_path: Path) -> None:
    summary = summarize_run(make_run(tmp_path / "run", Spec(sessions=10, rejected=1.0, gpu=False, seed=2)))
    assert summary["outcomes"]["rejected"] == 10
    assert summary["rejection_rate"] == 1.0
    assert summary["first_word"] == {"count": 0}
    assert summary["wer"] is None


def test_missing_run_dir_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such directory"):
        summarize_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="sessions.jsonl"):
        summarize_run(tmp_path / "empty")


def test_corrupt_session_line_is_named(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", Spec(sessions=20, seed=2))
    lines = (run / "sessions.jsonl").read_text().splitlines(keepends=True)
    lines[0] = '{"session_id": "s0", "outcome": \n'
    (run / "sessions.jsonl").write_text("".join(lines))
    with pytest.raises(UserError, match=r"sessions.jsonl line 1 \(byte 0\) does not match sessions.bin"):
        summarize_run(run)
    (run / "sessions.bin").unlink()  # without it (schema 1, or removed) every line is decoded
    lines[0], lines[6] = lines[6], '{"session_id": "s6", "outcome": \n'
    (run / "sessions.jsonl").write_text("".join(lines))
    with pytest.raises(UserError, match=r"sessions.jsonl line 7: not valid JSON"):
        summarize_run(run)


def test_sessions_bin_and_the_json_lines_give_the_same_summary(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", Spec(sessions=200, targets=("ws://a:1", "ws://b:2"), rejected=0.1,
                                          failed=0.1, seed=13))
    fast = summarize_run(run)
    (run / "sessions.bin").unlink()
    assert summarize_run(run) == fast


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_order_statistics_are_numpys_exactly(dtype: type) -> None:
    rng = np.random.default_rng(5)
    for values in (rng.gamma(3.0, 30.0, 100_003), np.round(rng.normal(0, 5, 10_000)),  # ties, negatives
                   np.array([7.0]), np.array([2.0, 1.0]), np.r_[rng.random(999), [np.nan] * 50]):
        arr = values.astype(dtype)
        before = arr.copy()
        got = summarize(arr)
        clean = arr[~np.isnan(arr)].astype(np.float64)
        want = {"count": clean.size, "min": clean.min(), "max": clean.max(),
                **{f"p{q}": np.percentile(clean, q) for q in (50, 90, 95, 99)}}
        assert {k: got[k] for k in want} == want
        assert got["mean"] == pytest.approx(clean.mean(), rel=1e-12)
        np.testing.assert_array_equal(arr, before)  # the caller's values keep their order
