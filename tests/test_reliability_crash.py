"""kill -9 of the load generator mid-run: the run directory still reads, with every session finished before the kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from test_locust_runs import REPO, locust_cmd
from test_reliability_faults import CLIPS, server_sessions

from yapbench.report import summarize_run
from yapbench.runlog import read_send_lag, read_session_records

# The client records a session right after it closes the socket; the server logs the release when it sees the
# close. A release this long before the kill is a session the generator had ample time to write.
RECORD_MARGIN_S = 1.0


def test_kill_9_mid_run_leaves_a_readable_run_directory_with_every_finished_session(ref_server, tmp_path):
    server = ref_server(step_ms=1, event_log=True)
    run_dir = tmp_path / "run"
    locust = subprocess.Popen(locust_cmd(server.url, run_dir, *CLIPS, users=4, run_time="120s"), cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sessions_file = run_dir / "sessions.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and locust.poll() is None:
        if sessions_file.exists() and sessions_file.read_text().count("\n") >= 12:
            break
        time.sleep(0.2)
    killed_at = time.time()
    os.kill(locust.pid, signal.SIGKILL)
    assert locust.wait(10) == -signal.SIGKILL
    server.stop()

    report = subprocess.run([sys.executable, "-m", "yapbench.cli", "report", str(run_dir)], capture_output=True,
                            text=True, timeout=120, cwd=REPO)
    assert report.returncode == 0, report.stderr[-3000:]
    assert (run_dir / "report.html").exists()
    records = read_session_records(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["whole_run"]["sessions"] == len(records) == summarize_run(run_dir)["whole_run"]["sessions"] >= 12
    assert len(read_send_lag(run_dir)) >= sum(r["frames_sent"] for r in records)  # lags precede their session line

    events = [json.loads(line) for line in server.event_log.read_text().splitlines()]
    probes = {e["conn"] for e in events if e.get("probe")}
    released_before = sum(e["ev"] == "release" and e["conn"] not in probes and e["t"] < killed_at - RECORD_MARGIN_S
                          for e in events)
    assert released_before > 0
    assert len(records) >= released_before  # nothing that finished well before the kill is missing
    assert len(records) <= server_sessions(server.event_log)["accept"]  # and nothing is invented
    assert {r["outcome"] for r in records} == {"ok"}
