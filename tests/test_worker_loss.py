"""A distributed run that loses a worker mid-run keeps what the worker handed over and says which one it lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter

from test_locust_runs import REPO, locust_cmd

from yapbench.runlog import read_session_records


def test_a_killed_worker_is_named_in_run_json_and_its_delivered_sessions_are_kept(ref_server, tmp_path):
    server = ref_server(batch_size=64, step_ms=1)
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(locust_cmd(server.url, run_dir, "--processes", "2", users=4, run_time="20s"), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        workers: Counter = Counter()
        while len(workers) < 2 and time.monotonic() < deadline:  # both workers have handed over sessions
            time.sleep(0.5)
            if (run_dir / "sessions.jsonl").exists():
                workers = Counter(s["worker"] for s in read_session_records(run_dir))
        assert len(workers) == 2, workers
        victim = sorted(workers)[0]
        os.kill(int(victim.rsplit(":", 1)[1]), signal.SIGKILL)
        _, stderr = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
    meta = json.loads((run_dir / "run.json").read_text())
    assert len(meta.get("workers_lost", [])) == 1, (meta.get("workers_lost"), stderr[-2000:])
    loss = meta["workers_lost"][0]
    kept = Counter(s["worker"] for s in read_session_records(run_dir))
    assert loss["name"] == victim
    assert loss["sessions_delivered"] == kept[victim] > 0  # everything it handed over is in the run directory
    assert loss["last_report_at"] <= loss["lost_at"]
    assert "lost worker" in stderr
    assert kept[sorted(workers)[1]] > workers[sorted(workers)[1]]  # the other worker went on streaming
