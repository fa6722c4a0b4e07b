"""Headless Locust runs against the reference server: what yapbench records equals what the server saw."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

from yapbench.metricdefs import METRICS
from yapbench.runlog import WORD_DTYPE, read_send_lag

REPO = Path(__file__).resolve().parent.parent
LOCUSTFILE = REPO / "locustfiles" / "stt.py"
SHORT = "real/en_ljspeech_*,real/en_picovoice_cheetah_test_en.wav"


def locust_cmd(url: str, run_dir: Path, *extra: str, users=6, run_time="8s") -> list[str]:
    """A short headless run's command line; options in `extra` override the defaults (argparse: last one wins).

    A distributed run gets a master port of its own: with Locust's default (5557), the workers of two runs on one
    machine at the same time would join whichever master they reach."""
    port = str(free_port())
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
            "-u", str(users), "-r", str(users), "-t", run_time, "--host", url, "--run-dir", str(run_dir),
            "--samples", SHORT, "--think-time", "0.1", "--stop-timeout", "20", "--speed", "2", "--no-report",
            "--master-bind-host", "127.0.0.1", "--master-bind-port", port, "--master-port", port, *extra]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_locust(server, run_dir: Path, *extra: str, users=6, run_time="8s", timeout=120,
               env=None) -> subprocess.CompletedProcess:
    return subprocess.run(locust_cmd(server.url, run_dir, *extra, users=users, run_time=run_time), capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env={**os.environ, **(env or {})})


def server_counts(event_log: Path) -> dict:
    accepted, rejected, words = set(), 0, 0
    for line in event_log.read_text().splitlines():
        e = json.loads(line)
        if e.get("probe"):
            continue
        if e["ev"] == "accept":
            accepted.add(e["conn"])
        elif e["ev"] == "reject":
            rejected += 1
        elif e["ev"] == "send" and e.get("type") == "Word" and e["conn"] in accepted:
            words += 1
    return {"accepted": len(accepted), "rejected": rejected, "words": words}


def client_counts(run_dir: Path) -> dict:
    sessions = [json.loads(line) for line in (run_dir / "sessions.jsonl").read_text().splitlines()]
    outcomes = Counter(s["outcome"] for s in sessions)
    words = (run_dir / "words.bin").stat().st_size // WORD_DTYPE.itemsize
    return {"sessions": sessions, "outcomes": outcomes, "words": words}


def test_headless_run_records_exactly_what_the_server_saw(ref_server, tmp_path):
    server = ref_server(batch_size=3, step_ms=1, event_log=True)
    run_dir = tmp_path / "run"
    proc = run_locust(server, run_dir, users=6)
    assert proc.returncode == 0, proc.stderr[-3000:]
    server.stop()
    seen, got = server_counts(server.event_log), client_counts(run_dir)
    assert got["outcomes"]["rejected"] > 0  # 6 users, 3 slots
    assert got["outcomes"]["ok"] == seen["accepted"]
    assert got["outcomes"]["rejected"] == seen["rejected"]
    assert set(got["outcomes"]) <= {"ok", "rejected"}, got["outcomes"]
    assert got["words"] == seen["words"] > 0
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["users"] == 6 and meta["ended_at"] > meta["started_at"] and "mid.wav" not in meta["samples"]
    # the command as a person types it in the checkout: no interpreter or checkout path in a report
    assert meta["command"][:3] == ["locust", "-f", "locustfiles/stt.py"], meta["command"]
    frames = sum(s["frames_sent"] for s in got["sessions"])
    assert len(read_send_lag(run_dir)) == frames
    # Locust's own stats carry the same counts: rejections are failures with no latency
    assert "rejected: server: no free channels" in proc.stderr + proc.stdout
    # and a row per metric the registry reports to Locust, under its name
    for m in METRICS:
        assert bool(re.search(rf"^\s*STT\s+{m.name}\s", proc.stderr + proc.stdout, re.M)) == m.locust, m.name


def test_distributed_run_leaves_a_complete_run_directory_on_the_master(ref_server, tmp_path):
    server = ref_server(batch_size=64, step_ms=1, event_log=True)
    run_dir = tmp_path / "run"
    proc = run_locust(server, run_dir, "--processes", "2", users=6, run_time="10s", timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    server.stop()
    seen, got = server_counts(server.event_log), client_counts(run_dir)
    workers = {s["worker"] for s in got["sessions"]}
    assert len(workers) == 2, workers  # both worker processes shipped records to the master
    assert got["outcomes"]["ok"] == seen["accepted"] > 0
    assert got["words"] == seen["words"]


def test_bad_samples_option_is_one_clear_line_and_exit_2(ref_server, tmp_path):
    server = ref_server()
    proc = run_locust(server, tmp_path / "run", "--samples", "no-such-*.wav", run_time="2s")
    assert proc.returncode == 2
    assert "'no-such-*.wav' matches nothing" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_gates_decide_the_exit_code(ref_server, tmp_path):
    server = ref_server(step_ms=1)
    gates = tmp_path / "gates.toml"
    # The max, not a tail percentile: a p95 of the few sessions of a 3 s run is "too few values", never a verdict.
    gates.write_text('[[gate]]\ncondition = "first_word.max <= 1ms"\n')
    proc = run_locust(server, tmp_path / "run", "--gates", str(gates), users=2, run_time="3s")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "FAIL" in proc.stdout + proc.stderr
    assert (tmp_path / "run" / "gates.xml").exists()
