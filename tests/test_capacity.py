"""The capacity finder: its search logic, and whole runs against reference servers whose capacity is known."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from yapbench.capacity.search import CapacitySearch, LevelResult, SearchSpec, evaluate_level, is_stable

REPO = Path(__file__).resolve().parent.parent


def level(users: int, ok: bool, rejections: float = 0.0, send_lag_p99: float = 1.0) -> LevelResult:
    from yapbench.slo import CheckResult, parse_condition

    cond = parse_condition("first_word.p95<=1000ms")
    return LevelResult(users, [CheckResult(cond, 500.0 if ok else 5000.0, ok)], rejections, send_lag_p99, 3, True, 10)


@pytest.mark.parametrize("true_capacity", [1, 5, 20, 21, 63, 64, 100])
def test_search_finds_the_capacity_within_one_resolution_step(true_capacity):
    spec = SearchSpec(slos=("first_word.p95<=1000ms",), start=4, resolution=2, max_users=1000)
    search, users, tried = CapacitySearch(spec), spec.start, []
    while users is not None:
        tried.append(users)
        users = search.record(level(users, users <= true_capacity))
    answer = search.answer()
    if true_capacity < spec.start:
        assert answer["capacity"] is None and search.limit == "first_level"
    else:
        assert true_capacity - spec.resolution <= answer["capacity"] <= true_capacity
        assert answer["first_bad_users"] - answer["capacity"] <= spec.resolution
    assert len(tried) == len(set(tried)) <= 12  # never measures a level twice


def test_generator_limit_ends_the_search_and_says_so():
    search = CapacitySearch(SearchSpec(slos=("first_word.p95<=1000ms",), start=8))
    assert search.record(level(8, True)) == 16
    assert search.record(level(16, True, send_lag_p99=25.0)) is None
    assert search.limit == "generator" and search.answer()["capacity"] == 8


def test_a_looser_generator_limit_judges_the_server_instead():
    search = CapacitySearch(SearchSpec(slos=("first_word.p95<=1000ms",), start=8, generator_limit_ms=30.0))
    lagging = evaluate_level(16, {"send_lag": {"p99": 25.0}, "sessions": 9}, [], 2, True, generator_limit_ms=30.0)
    assert search.record(level(8, True)) == 16 and search.record(lagging) == 32  # 25 ms: within the limit
    assert search.answer()["generator_limit_ms"] == 30.0 and search.limit == ""
    with pytest.raises(ValueError, match="--generator-limit"):
        SearchSpec(slos=(), generator_limit_ms=0)


def test_stability_needs_n_windows_within_tolerance():
    assert not is_stable([[100.0], [130.0]], 2, 0.10)
    assert is_stable([[100.0], [130.0], [104.0], [98.0]], 2, 0.10)
    assert is_stable([[0.0, 5.0], [0.0, 5.2], [0.0, 4.9]], 3, 0.10)
    assert not is_stable([[None], [1.0], [1.0]], 3, 0.10)


# These searches judge the server's slots and SLOs, not the generator: on a 2-core CI host a scheduling hiccup puts
# a few of a short window's frames 20-50 ms late, so the generator's limit is set where only a real stall trips it.
GENERATOR_LIMIT = ("--generator-limit", "100")


def run_capacity(server, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "yapbench.cli", "capacity", "--host", server.url, "--run-dir", str(run_dir),
           "--window", "2", "--settle", "2", "--stable-windows", "2", "--max-windows", "3", "--resolution", "1",
           "--samples", "real/en_ljspeech_LJ002-00*", "--speed", "4", *GENERATOR_LIMIT, *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)


def test_rejections_start_above_batch_size(ref_server, tmp_path):
    server = ref_server(batch_size=4, step_ms=1)
    proc = run_capacity(server, tmp_path / "cap", "--start", "2", "--slo", "first_word.p95<=5000ms")
    assert proc.returncode == 0, proc.stdout + "\n".join(ln for ln in proc.stderr.splitlines() if "capacity" in ln)
    answer = json.loads((tmp_path / "cap" / "capacity.json").read_text())
    assert answer["capacity"] == 4 and answer["first_bad_users"] == 5 and answer["limit"] == "rejections"
    assert "capacity: 4 real-time streams hold every SLO" in proc.stdout
    assert (tmp_path / "cap" / "capacity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "cap" / "report.html").exists()


def test_conversations_are_answered_in_conversations_and_in_streams(ref_server, tmp_path):
    """Each user holds one conversation (one slot through its pauses), which speaks only part of the time; a
    per-turn SLO is judged at the level. (One level: where rejections start is test_rejections_start_above_...'s.)"""
    server = ref_server(batch_size=4, step_ms=1)
    streams = tmp_path / "streams"  # an earlier search of back-to-back speech on this server, shown beside
    streams.mkdir()
    (streams / "capacity.json").write_text(json.dumps({
        "capacity": 4, "limit": "rejections", "resolution": 1, "first_bad_users": 5, "broken_first": ["rejections"],
        "levels": [], "slos": ["first_word.p95<=5000ms"], "per_target": {}}))
    proc = run_capacity(server, tmp_path / "cap", "--start", "4", "--max-users", "4", "--beside", str(streams),
                        "--conversation", "turns=2,pause=2s", "--slo", "end_of_turn_detect.max<=2s")
    assert proc.returncode == 0, proc.stdout + "\n".join(ln for ln in proc.stderr.splitlines() if "capacity" in ln)
    answer = json.loads((tmp_path / "cap" / "capacity.json").read_text())
    assert answer["capacity"] == 4 and answer["limit"] == "max_users" and answer["conversation"] == "turns=2,pause=2s"
    # turns of about 1.6 s of speech (the two LJ002-00* samples), each followed by its 2 s pause
    assert answer["speech_share"] == pytest.approx(1.6 / 3.6, abs=0.03)
    assert answer["speech_streams"] == round(4 * answer["speech_share"], 1)
    assert answer["levels"][0]["values"]["end_of_turn_detect.max"] is not None
    assert "capacity: at least 4 concurrent conversations: every SLO held" in proc.stdout
    assert f"In streams: 4 held open, about {answer['speech_streams']:g} of them speaking at once" in proc.stdout
    beside = f"beside it, {streams}: 4 real-time streams hold every SLO (resolution 1); at 5 streams: rejections"
    assert beside in proc.stdout
    html = (tmp_path / "cap" / "report.html").read_text(encoding="utf-8")
    assert "<th>conversations</th>" in html and "In streams: 4 held open" in html and beside in html


def test_beside_an_unreadable_run_is_exit_2_naming_the_file(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "yapbench.cli", "capacity", "--host", "127.0.0.1:9",
                           "--beside", str(tmp_path / "nowhere"), "--run-dir", str(tmp_path / "c")],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2 and f"{tmp_path / 'nowhere' / 'capacity.json'}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unusable_slo_is_exit_2_before_any_load(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "yapbench.cli", "capacity", "--host", "127.0.0.1:9",
                           "--slo", "first_wrod.p95<=1s", "--run-dir", str(tmp_path / "c")],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2 and "first_wrod" in proc.stderr and "Traceback" not in proc.stderr


def test_a_fleet_is_answered_per_target_and_in_total(ref_server, tmp_path):
    fast = ref_server(batch_size=8, step_ms=1)
    slow = ref_server(batch_size=8, step_ms=100)  # one step per 100 ms: it cannot keep up with 4x real time
    host = f"{fast.url},{slow.url}"
    cmd = [sys.executable, "-m", "yapbench.cli", "capacity", "--host", host, "--run-dir", str(tmp_path / "cap"),
           "--window", "2", "--settle", "2", "--stable-windows", "2", "--max-windows", "2", "--start", "2",
           "--max-users", "4", "--samples", "real/en_ljspeech_LJ002-00*", "--speed", "4",
           "--slo", "backlog.p99<=400ms", *GENERATOR_LIMIT]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    answer = json.loads((tmp_path / "cap" / "capacity.json").read_text())
    assert proc.returncode == 1 and answer["capacity"] is None  # the fleet as a whole breaks at once
    per = answer["per_target"]
    fast_url, slow_url = (next(u for u in per if str(s.port) in u) for s in (fast, slow))
    assert per[fast_url]["capacity_streams"] > 0  # short clips at 4x: a user streams a fraction of the time
    assert per[slow_url]["capacity_streams"] is None and "backlog" in per[slow_url]["broken_first"][0]
    assert f"{fast_url}: " in proc.stdout and f"{slow_url}: no level" in proc.stdout
    # The answer and its curve lead the report, built at the end of the run and again by `yapbench report`.
    report = tmp_path / "cap" / "report.html"
    for rebuilt in (False, True):
        if rebuilt:
            report.unlink()
            subprocess.run([sys.executable, "-m", "yapbench.cli", "report", str(tmp_path / "cap")], check=True,
                           capture_output=True, timeout=120, cwd=REPO)
        html = report.read_text(encoding="utf-8")
        assert "<h2>Capacity</h2>" in html and 'src="capacity.png"' in html, rebuilt
        assert html.index("<h2>Capacity</h2>") < html.index("<h2>What was run</h2>")
        assert f"{slow_url}: no level streams held" in html and "<td>breaks</td>" in html


def test_a_failing_window_summary_stops_the_load(ref_server, tmp_path):
    server = ref_server(step_ms=1)
    run_dir = tmp_path / "cap"
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "yapbench.cli", "capacity", "--host", server.url, "--run-dir", str(run_dir),
         "--samples", "real/en_ljspeech_*", "--speed", "4", "--start", "2", "--max-users", "8", "--window", "2",
         "--settle", "1", "--slo", "first_word.p95<=10s"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        sessions = run_dir / "sessions.jsonl"
        while not (sessions.exists() and sessions.stat().st_size) and time.monotonic() - started < 60:
            time.sleep(0.2)
        # A record no summary can read, with sessions.bin (which the report reads instead) gone: every window's
        # summary now decodes the JSON lines, and fails on this one.
        (run_dir / "sessions.bin").unlink()
        with open(sessions, "a") as f:
            f.write("{not json\n")
        out, _ = proc.communicate(timeout=90)  # the search's -t is 24 h: only stopping on the failure ends it now
    finally:
        proc.kill()
    assert "a window summary of" in out and "stopping the load" in out, out[-3000:]
    assert proc.returncode != 0
