"""The measurement window: headline figures from the steady state, the ramp and the drain as their own phases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from yapbench.report import build_report, summarize_run
from yapbench.report.synthetic import Spec, make_run
from yapbench.runlog import read_send_lag

T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def ramped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 s: users started over the first 15 s while the generator lagged ~40 ms; stopped at 48 s."""
    return make_run(tmp_path_factory.mktemp("ramped") / "run",
                    Spec(sessions=400, ramp_s=15.0, ramp_send_lag_ms=40.0, send_lag_ms=1.0, seed=8))


def sessions(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "sessions.jsonl").read_text().splitlines()]


def test_headline_is_the_steady_state_and_a_laggy_ramp_is_not_an_overloaded_run(ramped: Path) -> None:
    summary = summarize_run(ramped)  # default settle: 10 s
    steady = [s for s in sessions(ramped) if T0 + 25 <= s["started_at"] < T0 + 48]
    assert summary["sessions"] == len(steady) > 0
    assert summary["window"] == {"start": T0 + 25, "end": T0 + 48, "settle_s": 10.0, "steady_state": True}
    assert summary["send_lag"]["p99"] < 10 and summary["generator_overloaded"] is False
    ramp = summary["phases"]["ramp"]
    assert ramp["start"] == T0 and ramp["end"] == T0 + 25 and ramp["generator_overloaded"] is True
    assert 0.2 < ramp["late_share"] < 1 and ramp["late_frames"] == round(ramp["late_share"] * ramp["frames"])
    assert summary["phases"]["steady"]["late_share"] < 0.01
    assert any(n.startswith("generator lagged in the ramp: ") and "not in the headline" in n
               for n in summary["notes"])
    assert not any("in the steady" in n for n in summary["notes"])


def test_phases_account_for_every_session_and_frame(ramped: Path) -> None:
    summary = summarize_run(ramped)
    all_sessions = sessions(ramped)
    assert summary["whole_run"]["sessions"] == len(all_sessions)
    assert sum(p["sessions"] for p in summary["phases"].values()) == len(all_sessions)
    assert set(summary["phases"]) == {"ramp", "steady", "drain"}
    lags = read_send_lag(ramped)
    assert sum(p["frames"] for p in summary["phases"].values()) == (lags["t"] < T0 + 60).sum() > 0


def test_settle_moves_the_window_and_is_recorded(ramped: Path) -> None:
    summary = summarize_run(ramped, settle_s=0)
    assert summary["window"]["start"] == T0 + 15 and summary["window"]["settle_s"] == 0
    meta = json.loads((ramped / "run.json").read_text())
    (ramped / "run.json").write_text(json.dumps(meta | {"settle_s": 5.0}))
    try:
        assert summarize_run(ramped)["window"]["start"] == T0 + 20  # the run's own --settle
    finally:
        (ramped / "run.json").write_text(json.dumps(meta))


def test_gates_read_the_steady_state(ramped: Path, tmp_path: Path) -> None:
    from yapbench.cli import main

    build_report(ramped)
    gates = tmp_path / "gates.toml"
    gates.write_text('[[gate]]\ncondition = "send_lag.p99 <= 10ms"\n')
    assert main(["gate", str(ramped), "--gates", str(gates)]) == 0
    assert "ramp" in (ramped / "report.html").read_text()


def test_shapes_and_older_runs_have_no_phases(tmp_path: Path) -> None:
    plain = summarize_run(make_run(tmp_path / "plain", Spec(sessions=60, seed=3)))
    assert plain["phases"] == {} and plain["window"]["steady_state"] is False
    assert plain["sessions"] == plain["whole_run"]["sessions"] == 60
    run = make_run(tmp_path / "steps", Spec(sessions=60, ramp_s=10.0, seed=3))
    meta = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps(meta | {"shape": "steps"}))
    assert summarize_run(run)["phases"] == {}


def test_a_run_stopped_during_its_settle_time_says_so(tmp_path: Path) -> None:
    run = make_run(tmp_path / "short", Spec(sessions=60, ramp_s=45.0, seed=3))  # stops at 48 s: 3 s after
    summary = summarize_run(run)
    assert summary["sessions"] == 60 and summary["window"]["steady_state"] is False
    assert any(n.startswith("no steady state") for n in summary["notes"])
