"""Server telemetry that stays true when one target misbehaves: the slot poller's rounds, the report's used-slots
total, and gpu.csv's host column (GPU 0 of two hosts is two GPUs)."""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from yapbench.report.load import load_run
from yapbench.report import summarize_run
from yapbench.report.synthetic import Spec, make_run
from yapbench.report.timeseries import build, each_gpu
from yapbench.runlog import GPU, GPU_COLUMNS, SERVER, SERVER_COLUMNS

REPO = Path(__file__).resolve().parent.parent

POLL = textwrap.dedent("""
    from gevent import monkey
    monkey.patch_all()
    import json, sys, time, gevent
    from yapbench.serverpoll import SlotPoller

    poller = SlotPoller(sys.argv[2:], sys.argv[1], interval_s=1.0)
    poller.start()
    gevent.sleep(4.5)
    poller.stop()
    print(json.dumps(poller.failures))
""")


@pytest.fixture
def hanging_target():
    """A loopback port that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield f"ws://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def test_a_hanging_target_neither_delays_nor_zeroes_the_others(ref_server, hanging_target, tmp_path):
    server = ref_server(batch_size=3)
    proc = subprocess.run([sys.executable, "-c", POLL, str(tmp_path), server.url, hanging_target],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    failures = json.loads(proc.stdout)
    assert "no answer within the 1 s poll interval" in failures[hanging_target]
    with open(tmp_path / SERVER, newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["target"] for r in rows} == {server.url}  # no row, not a zero, for the target that never answered
    assert [(r["used_slots"], r["total_slots"]) for r in rows][:1] == [("0", "3")]
    # One row per one-second round, although the other target takes the whole second every time (a sequential
    # poll waited out its timeout and wrote this target's rows two seconds apart).
    gaps = np.diff([float(r["t"]) for r in rows])
    assert len(rows) >= 3 and gaps.max() < 1.9, gaps


def _server_rows(path: Path, t0: float, rows: list[tuple[float, str, int]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(",".join(SERVER_COLUMNS) + "\n")
        for t, target, used in rows:
            f.write(f"{t0 + t},{target},{used},100\n")


def test_used_slots_total_has_a_gap_where_a_target_missed_polls_not_a_dip(tmp_path):
    a, b = "ws://127.0.0.1:1", "ws://127.0.0.1:2"
    run_dir = make_run(tmp_path / "run", Spec(sessions=50, duration_s=20.0, targets=(a, b)))
    t0 = json.loads((run_dir / "run.json").read_text())["started_at"]
    missed = {6, 10, 11, 12}  # b misses one round at 6 s (jitter: carried over), three at 10-12 s (a gap)
    _server_rows(run_dir / SERVER, t0, [(s + 0.5, tgt, 70) for s in range(20) for tgt in (a, b)
                                        if not (tgt == b and s in missed)])
    used = build(load_run(run_dir)).active["used_slots"]
    assert used.loc[5.0] == used.loc[6.0] == used.loc[9.0] == 140
    assert used.loc[[11.0, 12.0]].isna().all()  # unknown, not 70
    assert used.min() == 140


def _gpu_rows(path: Path, t0: float, hosts: list[str | None]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(",".join(c for c in GPU_COLUMNS if c != "host" or hosts[0] is not None) + "\n")
        for s in range(10):
            for host in hosts:
                for gpu in (0, 1):
                    prefix = f"{t0 + s}," + ("" if host is None else f"{host},")
                    f.write(prefix + f"{gpu},NVIDIA H200,50,1000,143000,300,60,1980\n")


@pytest.mark.parametrize("hosts, labels", [
    (["gpu-a", "gpu-b"], ["gpu-a gpu 0", "gpu-a gpu 1", "gpu-b gpu 0", "gpu-b gpu 1"]),
    ([None], ["gpu 0", "gpu 1"]),  # a gpu.csv written before the host column: one host
])
def test_gpus_are_counted_and_drawn_per_host(tmp_path, hosts, labels):
    run_dir = make_run(tmp_path / "run", Spec(sessions=30, duration_s=10.0))
    t0 = json.loads((run_dir / "run.json").read_text())["started_at"]
    _gpu_rows(run_dir / GPU, t0, hosts)
    run = load_run(run_dir)
    assert not [n for n in run.notes if "gpu.csv" in n]
    assert [label for label, _ in each_gpu(build(run).gpu)] == labels
    assert summarize_run(run_dir)["gpu"]["gpus"] == len(labels)
