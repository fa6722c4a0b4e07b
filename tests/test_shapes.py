"""Load shapes: the user counts they ask for over time, and a stepped headless run that ends by itself."""

from __future__ import annotations

import json
import subprocess
import sys

# Importing locust monkey-patches this whole process (threads become greenlets), which would break the tests that
# run after this module: the shapes are exercised in a child process.
TICKS = """
from yapbench.locust.shapes import RampShape, SpikeShape, StepShape

def ticks(shape, times):
    out = []
    for t in times:
        shape.get_run_time = lambda t=t: t
        out.append(shape.tick())
    return out

assert ticks(RampShape(10, 10), [0, 5, 9.9, 10]) == [(0, 1.0), (5, 1.0), (10, 1.0), None]
assert ticks(StepShape(10, 3, 2), [0, 2, 4, 6, 7.9, 8]) == [(3, 3.0), (6, 3.0), (9, 3.0), (10, 3.0), (10, 3.0), None]
assert ticks(SpikeShape(30, 9), [0, 3, 5.9, 6, 8.9, 9]) == [(3, 30.0), (30, 30.0), (30, 30.0), (3, 30.0), (3, 30.0),
                                                          None]
print("ok")
"""


def test_ramp_steps_and_spike_user_counts():
    proc = subprocess.run([sys.executable, "-c", TICKS], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_a_stepped_run_adds_users_per_step_and_ends_at_the_run_time(ref_server, tmp_path):
    from test_locust_runs import run_locust

    server = ref_server(step_ms=1)
    run_dir = tmp_path / "run"
    proc = run_locust(server, run_dir, "--shape", "steps", "--step-users", "2", "--step-time", "3", users=4,
                      run_time="7s")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Shape test updating to 2 users" in proc.stderr and "Shape test updating to 4 users" in proc.stderr
    started = sorted(json.loads(line)["started_at"] for line in (run_dir / "sessions.jsonl").read_text().splitlines())
    assert started and started[-1] - started[0] < 12
    assert json.loads((run_dir / "run.json").read_text())["shape"] == "steps"
