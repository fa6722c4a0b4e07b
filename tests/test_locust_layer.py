"""The Locust layer as a locustfile author meets it: a scenario of one's own around `self.client`, and a clear
error without yapbench's setup."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_example_locustfile_streams_one_file_per_turn(ref_server, tmp_path):
    server = ref_server(step_ms=1)
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(REPO / "docs" / "examples" / "turns.py"), "--headless",
         "--only-summary", "-u", "2", "-r", "2", "-t", "9s", "--host", server.url, "--run-dir", str(run_dir),
         "--samples", "mid.wav,short-noisy.wav", "--speed", "4", "--no-report"],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sessions = [json.loads(line) for line in (run_dir / "sessions.jsonl").read_text().splitlines()]
    outcomes = Counter(s["outcome"] for s in sessions)
    assert outcomes["ok"] >= 2 and set(outcomes) <= {"ok", "cancelled"}
    assert {s["sample"] for s in sessions} == {"mid.wav"}  # the scenario's file, not a draw from --samples
    # Each user waits 2-4 s between turns: 2 users cannot start more than one turn each per 2 s (+ the first).
    assert len(sessions) <= 2 * (9 // 2 + 1)
    per_start = sorted(s["started_at"] for s in sessions)
    assert per_start[-1] - per_start[0] >= 2.0


LIBRARY_USE = """
from locust.env import Environment
from yapbench.locust.locustfile import SpeechStream

env = Environment(user_classes=[SpeechStream])
try:
    SpeechStream(env)
except Exception as exc:
    print(type(exc).__name__)
    print(exc)
"""


def test_stt_user_without_yapbench_setup_says_what_is_missing():
    proc = subprocess.run([sys.executable, "-c", LIBRARY_USE], capture_output=True, text=True, timeout=60, cwd=REPO)
    kind, _, message = proc.stdout.partition("\n")
    assert kind == "SetupMissing", proc.stdout + proc.stderr
    assert "SpeechStream needs yapbench's options" in message and "yapbench.locust.setup(environment)" in message
