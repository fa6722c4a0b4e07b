"""Open-loop load: the arrival schedule, Erlang B, goodput objectives, and headless runs against the reference server.

Statistical checks use fixed seeds (the pure schedule) or bounds several standard deviations wide (the runs), so
they cannot flake on a busy machine; a run's arrival count and gaps come from the due times it recorded.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from processes import stop_process
from yapbench.arrivals import ArrivalPlan, erlang_b
from yapbench.capacity.opensearch import OpenSpec, RateLevel, RateSearch, open_answer_line
from yapbench.errors import UserError
from yapbench.gates import evaluate
from yapbench.goodput import parse_objectives
from yapbench.report import summarize_run
from yapbench.report.openloop import good_sessions
from yapbench.runlog import read_words

from test_locust_runs import REPO, run_locust

FAST = "real/en_ljspeech_LJ002*"  # two 1.5 s clips: short holding times, many arrivals in a few seconds


def _gaps(plans: list[ArrivalPlan], n: int) -> np.ndarray:
    """Gaps of the merged schedule of several workers, over their first n arrivals each (up to the earliest end)."""
    times = []
    for i, plan in enumerate(plans):
        it = plan.offsets(seed=1000 + i)
        times.append(np.array([next(it) for _ in range(n)]))
    horizon = min(t[-1] for t in times)
    merged = np.sort(np.concatenate([t[t <= horizon] for t in times]))
    return np.diff(merged)


def cv(gaps: np.ndarray) -> float:
    return float(gaps.std() / gaps.mean())


def test_poisson_schedule_has_the_rate_and_exponential_gaps_even_split_over_workers():
    for workers in (1, 4):
        gaps = _gaps([ArrivalPlan(50.0, "poisson", workers, i) for i in range(workers)], 20_000 // workers)
        assert gaps.mean() == pytest.approx(1 / 50.0, rel=0.05)
        assert 0.95 < cv(gaps) < 1.05  # exponential: CV 1 (the standard error here is about 0.007)
        # Memoryless: the gaps' median is ln 2 times the mean (a constant or bursty split would not be)
        assert np.median(gaps) / gaps.mean() == pytest.approx(math.log(2), rel=0.05)


def test_constant_schedule_interleaves_workers_at_offset_phases():
    gaps = _gaps([ArrivalPlan(10.0, "constant", 3, i) for i in range(3)], 100)
    assert gaps == pytest.approx(np.full(gaps.size, 0.1), abs=1e-9)  # one even grid, no two workers together
    it = ArrivalPlan(4.0, "constant").offsets()
    assert [next(it) for _ in range(3)] == [0.0, 0.25, 0.5]


def test_bad_plans_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="positive"):
        ArrivalPlan(0.0)
    with pytest.raises(ValueError, match="poisson, constant"):
        ArrivalPlan(1.0, "bursty")


def test_erlang_b_matches_the_tables():
    assert erlang_b(1, 1.0) == pytest.approx(0.5)
    assert erlang_b(3, 3.0) == pytest.approx(0.3462, abs=1e-4)
    assert erlang_b(10, 5.0) == pytest.approx(0.01838, abs=1e-5)
    assert erlang_b(100, 80.0) == pytest.approx(0.00400, abs=1e-4)
    assert erlang_b(0, 2.0) == 1.0 and erlang_b(5, 0.0) == 0.0


def test_goodput_objectives_parse_in_the_gates_language_and_explain_mistakes():
    objs = parse_objectives("first_word<=1s, word_lag.max<=2000ms,finalize_ms<500")
    assert [(o.metric, o.stat, o.op, o.limit_ms) for o in objs] == [
        ("first_word", None, "<=", 1000.0), ("word_lag", "max", "<=", 2000.0), ("finalize", None, "<", 500.0)]
    assert parse_objectives("") == ()
    for text, why in (("word_lag<=1s", "word_lag.max"), ("first_word.p95<=1s", "one value per session"),
                      ("wer<=10%", "unknown per-session metric"), ("first_word<=5%", "unit '%'"),
                      ("first_word 100", "PATH OP VALUE")):
        with pytest.raises(UserError, match=why):
            parse_objectives(text)


def test_goodput_judges_each_session_by_its_own_values():
    sessions = pd.DataFrame({
        "outcome": ["ok", "ok", "ok", "ok", "rejected", "disconnected"],
        "first_word_ms": [500.0, 1500.0, 400.0, np.nan, np.nan, 300.0],
    })
    # session 0: lags 100, 900; session 2: lag 2500 (too late); session 3: no word at all; session 5: not ok
    words = pd.DataFrame({"srow": [0, 0, 1, 2, 5], "lag_ms": [100.0, 900.0, 100.0, 2500.0, 10.0]})
    objectives = [o.record() for o in parse_objectives("first_word<=1000ms,word_lag.max<=2000ms")]
    good = good_sessions(sessions, words, objectives)
    assert good.tolist() == [True, False, False, False, False, False]
    good = good_sessions(sessions, words, [o.record() for o in parse_objectives("word_lag.p50<=1000ms")])
    assert good.tolist() == [True, True, False, False, False, False]


# --- headless runs -----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "sessions.jsonl").read_text().splitlines()]


def test_open_loop_blocking_follows_erlang_b_and_rejections_do_not_slow_arrivals(ref_server, tmp_path):
    server = ref_server(batch_size=2, step_ms=1)
    run_dir = tmp_path / "run"
    rate, seconds = 12.0, 14
    # A late limit of 2 s: this test is about the server's blocking, and a busy 2-core host can wake the arrival
    # clock 0.25 s (the default limit) late, which drops an arrival (the generator's fault, tested elsewhere).
    proc = run_locust(server, run_dir, "--arrival-rate", str(rate), "--samples", FAST, "--speed", "4",
                      "--goodput", "first_word<=2000ms,word_lag.max<=3000ms", "--arrival-late-limit", "2",
                      users=40, run_time=f"{seconds}s")
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = records(run_dir)
    outcomes = Counter(r["outcome"] for r in recs)
    assert set(outcomes) <= {"ok", "rejected", "cancelled"}, outcomes  # nothing dropped: the cap of 40 never binds
    assert all(r["due_at"] is not None for r in recs)  # every session was an arrival, even while the load stopped
    due = np.sort([r["due_at"] for r in recs])
    span = due[-1] - json.loads((run_dir / "run.json").read_text())["arrival_start"]
    # Half the sessions are turned away, and the arrivals still come at the rate (Poisson: +-4 sd, about +-50)
    assert outcomes["rejected"] > 0.25 * len(recs)
    assert abs(len(recs) - rate * span) < 4 * math.sqrt(rate * span) + 2
    assert 0.7 < cv(np.diff(due)) < 1.3
    # Latency from the due time: a late start shows in connect_ms (no coordinated omission)
    started = [r for r in recs if r["outcome"] == "ok"]
    assert all(r["connect_ms"] >= r["start_lag_ms"] >= 0 for r in started)

    s = summarize_run(run_dir, since=0)  # the whole run (the headline is the steady state)
    assert s["arrival_rate"] == rate and s["slots"] == 2 and s["attempts"] == len(recs)
    assert s["blocking"] == pytest.approx(outcomes["rejected"] / len(recs))
    assert s["offered_erlangs"] == pytest.approx(s["measured_arrival_rate"] * s["holding_s"], rel=0.01)  # none dropped
    assert s["carried_erlangs"] <= 2.0 + 0.2  # two slots carry at most two Erlangs
    # Measured blocking against Erlang B at the measured offered load (standard error here about 0.04)
    assert s["erlang_b"] == pytest.approx(erlang_b(2, s["offered_erlangs"]))
    assert abs(s["blocking"] - s["erlang_b"]) < 0.15, (s["blocking"], s["erlang_b"], s["offered_erlangs"])
    # Goodput from the raw records, session by session
    words = read_words(run_dir, [r["session_id"] for r in recs], np.array([r["started_at"] for r in recs]))
    lags = defaultdict(list)
    for line, lag in zip(words.line, words.lag_ms):
        lags[recs[line]["session_id"]].append(float(lag))
    good = [r for r in started if r["first_word_ms"] is not None and r["first_word_ms"] <= 2000
            and lags[r["session_id"]] and max(lags[r["session_id"]]) <= 3000]
    decided = len(recs) - outcomes["cancelled"]
    assert s["goodput"] == pytest.approx(len(good) / decided)
    assert 0 < s["goodput"] < 1
    # ... and the gates read it like any rate
    verdict = evaluate(s, ["goodput>=0.99", f"blocking<={s['blocking'] + 0.001}",
                           "throughput.goodput_sessions_per_s>0"])
    assert [r.status.value for r in verdict.results] == ["FAIL", "pass", "pass"]


def test_a_cap_too_small_drops_arrivals_with_their_lateness_instead_of_delaying_them(ref_server, tmp_path):
    server = ref_server(batch_size=16, step_ms=1)
    run_dir = tmp_path / "run"
    proc = run_locust(server, run_dir, "--arrival-rate", "10", "--arrival", "constant", "--samples", FAST,
                      "--speed", "1", users=2, run_time="6s")
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = records(run_dir)
    dropped = [r for r in recs if r["outcome"] == "dropped"]
    # 10 arrivals/s of ~2 s sessions on 2 slots: most are dropped, at their due time, never started late
    assert len(dropped) > len(recs) / 2
    assert all(r["start_lag_ms"] < 250 and "concurrency cap" in r["error"] for r in dropped)
    started = [r for r in recs if r["outcome"] != "dropped"]
    assert started and all(r["start_lag_ms"] < 250 for r in started)
    due = np.sort([r["due_at"] for r in recs])
    assert np.diff(due) == pytest.approx(np.full(len(due) - 1, 0.1), abs=1e-6)  # the schedule did not bend
    s = summarize_run(run_dir, since=0)  # the whole run (the headline is the steady state)
    assert s["dropped_rate"] == pytest.approx(len(dropped) / len(recs))
    assert s["outcomes"]["dropped"] == len(dropped) and s["error_rate"] == 0


def test_distributed_workers_keep_one_schedule_without_bursts(ref_server, tmp_path):
    server = ref_server(batch_size=64, step_ms=1)
    run_dir = tmp_path / "run"
    port = str(free_port())  # not Locust's default 5557: another distributed run on this machine may hold it
    proc = run_locust(server, run_dir, "--processes", "2", "--master-bind-port", port, "--master-port", port,
                      "--arrival-rate", "8", "--arrival", "constant",
                      "--samples", FAST, "--speed", "4", users=20, run_time="8s", timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = records(run_dir)
    assert len({r["worker"] for r in recs}) == 2
    due = np.sort([r["due_at"] for r in recs])
    # Two workers at 4/s each, at offset phases: one even 8/s grid, not pairs of simultaneous arrivals
    assert np.diff(due) == pytest.approx(np.full(len(due) - 1, 0.125), abs=0.02)


def test_bad_open_loop_options_are_one_line_and_exit_2(ref_server, tmp_path):
    server = ref_server()
    proc = run_locust(server, tmp_path / "run", "--goodput", "word_lag<=1s", run_time="2s")
    assert proc.returncode == 2
    assert "word_lag.max" in proc.stderr and "Traceback" not in proc.stderr


# --- yapbench capacity --model open ------------------------------------------------------------------------------


def _level(rate: float, passed: bool) -> RateLevel:
    return RateLevel(rate, [] if passed else ["blocking <= 1%"], traffic={"offered_erlangs": rate / 2})


def test_rate_search_steps_up_then_bisects_to_the_resolution():
    true_capacity = 13.0
    search = RateSearch(OpenSpec(slos=("blocking<=1%",), start_rate=1.0, factor=2.0, resolution=0.05))
    rate, tried = 1.0, []
    while rate is not None:
        tried.append(rate)
        rate = search.record(_level(rate, rate <= true_capacity))
    assert tried[:5] == [1.0, 2.0, 4.0, 8.0, 16.0] and tried[5] == 12.0
    answer = search.answer()
    assert answer["limit"] == "slo" and answer["capacity_rate"] <= true_capacity < answer["first_bad_rate"]
    assert answer["first_bad_rate"] - answer["capacity_rate"] <= 0.05 * answer["capacity_rate"]
    assert answer["capacity_erlangs"] == answer["capacity_rate"] / 2
    assert "capacity: " in open_answer_line(answer) and "Erlangs offered" in open_answer_line(answer)


def test_dropped_arrivals_end_the_search_as_the_generators_limit():
    search = RateSearch(OpenSpec(slos=("blocking<=1%",)))
    assert search.record(_level(1.0, True)) == 2.0
    dropped = RateLevel(2.0, [], dropped=3)
    assert search.record(dropped) is None
    assert search.answer()["limit"] == "generator" and search.answer()["capacity_rate"] == 1.0


def test_capacity_open_model_sweeps_rates_and_draws_blocking_against_erlang_b(ref_server, tmp_path):
    server = ref_server(batch_size=2, step_ms=1)
    run_dir = tmp_path / "cap"
    cmd = [sys.executable, "-m", "yapbench.cli", "capacity", "--model", "open", "--host", server.url,
           "--run-dir", str(run_dir), "--window", "5", "--settle", "1", "--stable-windows", "1",
           "--samples", FAST, "--speed", "4", "--start-rate", "2", "--max-rate", "8", "--rate-resolution", "0.3",
           "--max-users", "16", "--slo", "blocking<=20%", "--slo", "goodput>=0.5", "--goodput", "first_word<=3s"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    answer = json.loads((run_dir / "capacity.json").read_text())
    assert answer["model"] == "open" and answer["levels"]
    for lv in answer["levels"]:  # every verdict follows from its own measurements
        t = lv["traffic"]
        if t["offered_erlangs"] is not None:  # (a level starved by a busy machine may have too few arrivals)
            assert t["slots"] == 2 and t["erlang_b"] == pytest.approx(erlang_b(2, t["offered_erlangs"]))
        held = (t["blocking"] is not None and t["blocking"] <= 0.2 and t["goodput"] is not None
                and t["goodput"] >= 0.5 and not lv["generator_bound"])
        assert lv["passed"] == held, lv
    rates = [lv["rate"] for lv in answer["levels"]]
    assert rates[0] == 2.0 and all(r <= 8.0 for r in rates)
    if answer["capacity_rate"] is not None:
        assert answer["capacity_rate"] == max(lv["rate"] for lv in answer["levels"] if lv["passed"])
    assert open_answer_line(answer) in proc.stdout
    assert (run_dir / "capacity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Capacity (open model)" in (run_dir / "report.html").read_text()


def test_the_web_ui_form_starts_an_open_loop(ref_server, tmp_path):
    server = ref_server(batch_size=16, step_ms=1)
    port = free_port()
    run_dir = tmp_path / "run"
    locust = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(REPO / "locustfiles" / "stt.py"), "--host", server.url,
         "--web-host", "127.0.0.1", "--web-port", str(port), "--samples", FAST, "--speed", "4",
         "--run-dir", str(run_dir), "--no-report"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        page = ""
        for _ in range(150):
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read().decode()
                break
            except OSError:
                time.sleep(0.2)
        for field in ("arrival_rate", "arrival_late_limit", "goodput"):  # the start form shows the options
            assert f'"{field}"' in page
        form = {"user_count": "8", "spawn_rate": "8", "host": server.url, "arrival_rate": "5", "arrival": "constant",
                "goodput": "first_word<=3s"}
        answer = urllib.request.urlopen(f"http://127.0.0.1:{port}/swarm", data=urllib.parse.urlencode(form).encode(),
                                        timeout=10)
        assert json.loads(answer.read())["success"]
        time.sleep(4)
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/stop", method="POST"), timeout=10)
    finally:
        assert stop_process(locust, 60), "locust did not stop within 60 s of SIGTERM"
    recs = records(run_dir)
    due = np.sort([r["due_at"] for r in recs])
    assert len(due) >= 10 and np.diff(due) == pytest.approx(np.full(len(due) - 1, 0.2), abs=1e-6)
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["arrival_rate"] == 5.0 and meta["arrival"] == "constant"
    assert meta["goodput_objectives"] == "first_word<=3s"
