"""The fault matrix: headless Locust runs against the reference server's injected faults.

Every test checks the outcome counts and that the run directory accounts for every session the server saw:
each accept, reject and 401 in the server's event log is one line of sessions.jsonl, and the only lines the
server cannot have seen are connect_failed ones (TCP refused, or the connection died before the upgrade).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from pathlib import Path

import numpy as np

from test_locust_runs import REPO, locust_cmd, run_locust

from yapbench.report import summarize_run
from yapbench.runlog import read_session_records

# Two 1.5-2.5 s LJSpeech clips: at --speed 4 a session lasts under a second, so a few seconds hold several each.
CLIPS = ("--samples", "real/en_ljspeech_LJ002-00*", "--speed", "4")
SERVER_SESSION_EVENTS = ("accept", "reject", "auth_failed")


def server_sessions(*event_logs: Path) -> Counter:
    """Sessions the server(s) saw, by kind (launch.py's readiness probes left out)."""
    seen: Counter = Counter()
    for path in event_logs:
        for line in path.read_text().splitlines():
            e = json.loads(line)
            if e["ev"] in SERVER_SESSION_EVENTS and not e.get("probe"):
                seen[e["ev"]] += 1
    return seen


def outcomes(run_dir: Path) -> Counter:
    return Counter(s["outcome"] for s in read_session_records(run_dir))


def assert_accounted(run_dir: Path, *servers) -> Counter:
    """Every session the servers saw is in the run directory, and nothing else but connect_failed is (plus, at the
    end of the run, sessions cancelled during their upgrade, which the server may or may not have accepted)."""
    for server in servers:
        server.stop()  # flushes the event log
    seen = server_sessions(*(s.event_log for s in servers))
    records = read_session_records(run_dir)
    got = Counter(s["outcome"] for s in records)
    in_upgrade = sum(1 for s in records if s["outcome"] == "cancelled" and s["connect_ms"] is None)
    reachable = sum(got.values()) - got["connect_failed"]
    assert reachable - in_upgrade <= sum(seen.values()) <= reachable, (seen, got)
    assert seen["reject"] == got["rejected"] and seen["auth_failed"] == got["auth_failed"], (seen, got)
    return got


def fault_run(ref_server, tmp_path: Path, users: int = 3, run_time: str = "4s", extra: tuple[str, ...] = (),
              **fault: object) -> tuple[subprocess.CompletedProcess, Counter, list[dict]]:
    server = ref_server(step_ms=1, event_log=True, **fault)
    run_dir = tmp_path / "run"
    proc = run_locust(server, run_dir, *CLIPS, *extra, users=users, run_time=run_time)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    got = assert_accounted(run_dir, server)
    return proc, got, read_session_records(run_dir)


def test_error_mid_stream_is_server_error_and_users_go_on(ref_server, tmp_path):
    proc, got, sessions = fault_run(ref_server, tmp_path, fault_error_after_steps=5)
    assert proc.returncode == 1  # no session completed ok
    assert set(got) <= {"server_error", "cancelled"}, got
    assert got["server_error"] >= 2 * 3  # not a "not served" outcome: each user keeps streaming, no backoff
    assert all("fault injected" in s["error"] for s in sessions if s["outcome"] == "server_error")
    assert "server_error: server: fault injected: model error" in proc.stdout + proc.stderr


def test_stalled_server_ends_sessions_by_timeout_and_users_move_on(ref_server, tmp_path):
    proc, got, sessions = fault_run(ref_server, tmp_path, run_time="5s", extra=("--flush-timeout", "1"),
                                    fault_stall_after_steps=5)
    assert set(got) <= {"flush_timeout", "stalled", "cancelled"}, got
    timed_out = [s for s in sessions if s["outcome"] in ("flush_timeout", "stalled")]
    assert len(timed_out) >= 2 * 3, got  # each user's session times out, then it starts the next one
    assert all(1.0 <= s["ended_at"] - s["started_at"] < 15 for s in timed_out)


def test_slow_ready_is_no_ready_within_the_ready_timeout(ref_server, tmp_path):
    proc, got, sessions = fault_run(ref_server, tmp_path, extra=("--ready-timeout", "0.5"),
                                    fault_ready_delay_ms=3000)
    assert set(got) <= {"no_ready", "cancelled"}, got
    no_ready = [s for s in sessions if s["outcome"] == "no_ready"]
    assert len(no_ready) >= 3
    assert all(s["ready_ms"] is None and s["ended_at"] - s["started_at"] < 3 for s in no_ready)


def test_close_1011_is_disconnected_with_its_close_code(ref_server, tmp_path):
    proc, got, sessions = fault_run(ref_server, tmp_path, fault_close_1011_after_steps=5)
    assert set(got) <= {"disconnected", "cancelled"}, got
    assert got["disconnected"] >= 3
    assert {s["close_code"] for s in sessions if s["outcome"] == "disconnected"} == {1011}


def test_undecodable_message_is_protocol_error(ref_server, tmp_path):
    proc, got, sessions = fault_run(ref_server, tmp_path, fault_garbage_every=4)
    assert set(got) <= {"protocol_error", "cancelled"}, got
    assert got["protocol_error"] >= 3


def test_dropped_words_complete_and_show_in_wer(ref_server, tmp_path):
    clean_proc, clean, _ = fault_run(ref_server, tmp_path / "clean", users=2, run_time="3s")
    proc, got, _ = fault_run(ref_server, tmp_path / "lossy", users=2, run_time="3s", fault_drop_words=0.5)
    assert clean_proc.returncode == proc.returncode == 0
    assert set(got) <= {"ok", "cancelled"} and got["ok"] >= 2, got
    clean_wer = summarize_run(tmp_path / "clean" / "run")["wer"]
    lossy_wer = summarize_run(tmp_path / "lossy" / "run")["wer"]
    assert clean_wer < 0.1 and lossy_wer > clean_wer + 0.2, (clean_wer, lossy_wer)


def test_every_connection_401_is_one_clear_message_and_no_busy_loop(ref_server, tmp_path):
    users, seconds = 3, 6
    proc, got, sessions = fault_run(ref_server, tmp_path, users=users, run_time=f"{seconds}s",
                                    api_key="not-the-key-the-client-sends")
    assert proc.returncode == 1
    assert set(got) == {"auth_failed"}, got
    # Backoff (full jitter, 0.5 s doubling to 8 s) after each failure: a handful of tries per user, not thousands.
    assert users <= got["auth_failed"] <= users * 8, got
    message = "HTTP 401 Unauthorized: the API key is not in the server's authorized_ids (set $KYUTAI_API_KEY"
    assert proc.stderr.count(message) == users  # once per user, at its first failure


def test_capacity_storm_backs_off_with_jitter(ref_server, tmp_path):
    users, seconds = 20, 8
    proc, got, sessions = fault_run(ref_server, tmp_path, users=users, run_time=f"{seconds}s", batch_size=2)
    assert proc.returncode == 0
    assert set(got) <= {"ok", "rejected", "cancelled"} and got["ok"] >= 4, got
    rejected = np.array(sorted(s["started_at"] for s in sessions if s["outcome"] == "rejected"))
    # Without backoff 18 turned-away users would retry every think time (0.1 s): ~180 rejections a second.
    assert len(rejected) <= users * 8, got
    per_second = np.bincount((rejected - rejected[0]).astype(int))
    # The first second holds the first wave and the first retries (0..1 s); after that the doubling spreads them.
    assert per_second[0] <= 3 * users and per_second[2:].max() <= users, per_second
    # No herd: after the first wave (everyone at once), retries spread out instead of coming back together.
    later = rejected[rejected > rejected[0] + 1.0]
    assert len(later) >= users
    per_100ms = np.bincount(((later - later[0]) * 10).astype(int))
    assert per_100ms.max() <= users // 2, per_100ms


def test_server_killed_mid_run_and_restarted_users_resume(ref_server, tmp_path):
    first = ref_server(step_ms=1, event_log=True, fault_exit_after=3)
    run_dir = tmp_path / "run"
    cmd = locust_cmd(first.url, run_dir, *CLIPS, users=4, run_time="16s")
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO) as locust:
        first.process.wait(timeout=15)  # the fault: the process exits abruptly, no close frames
        time.sleep(2)  # down for a while: sessions fail to connect, users back off
        second = ref_server(step_ms=1, event_log=True, port=first.port)
        restarted_at = time.time()
        _, stderr = locust.communicate(timeout=90)
    assert locust.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    got = assert_accounted(run_dir, first, second)
    sessions = read_session_records(run_dir)
    assert got["disconnected"] >= 1, got  # the sessions streaming when the server died
    assert got["connect_failed"] >= 1, got  # tries while it was down
    assert set(got) <= {"ok", "disconnected", "connect_failed", "cancelled"}, got
    assert server_sessions(second.event_log)["accept"] >= 4  # the users came back
    assert sum(s["outcome"] == "ok" and s["started_at"] > restarted_at for s in sessions) >= 4, got
