"""Hundreds of streams in one Locust process: the records stay exact at scale (no timing assertions here: the
numbers belong to benchmarks/loadgen.py)."""

from __future__ import annotations

import json
from pathlib import Path

from test_locust_runs import SHORT, client_counts, run_locust, server_counts

from yapbench.runlog import read_send_lag

STREAMS = 300
FLUSH_FRAMES = 40  # SessionConfig's default: silence frames after the Marker, which the server may also process


def server_frames(event_log: Path) -> int:
    """Frames the server processed for the load's connections (the readiness probe excluded)."""
    accepted, frames = set(), 0
    for line in event_log.read_text().splitlines():
        e = json.loads(line)
        if e["ev"] == "accept" and not e.get("probe"):
            accepted.add(e["conn"])
        elif e["ev"] == "release" and e["conn"] in accepted:
            frames += e["steps"]
    return frames


def test_300_streams_in_one_process_record_what_the_server_saw(ref_server, tmp_path):
    server = ref_server(batch_size=STREAMS + 50, step_ms=1, event_log=True)
    run_dir = tmp_path / "run"
    proc = run_locust(server, run_dir, "--think-time", "0", "--speed", "1", "--samples", SHORT, "--stop-timeout", "30",
                      users=STREAMS, run_time="10s", timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    server.stop()
    seen, got = server_counts(server.event_log), client_counts(run_dir)
    sessions = got["sessions"]
    assert set(got["outcomes"]) == {"ok"}, got["outcomes"]
    assert len(sessions) == seen["accepted"] >= STREAMS
    assert got["words"] == seen["words"] > 0
    # every frame delivered: each session sent its whole clip, the server processed all of it (plus at most the
    # flush burst), and every frame's send time is in send_lag.bin
    sent = sum(s["frames_sent"] for s in sessions)
    assert all(s["frames_sent"] == s["frames_planned"] for s in sessions)
    assert sent <= server_frames(server.event_log) <= sent + FLUSH_FRAMES * len(sessions)
    assert len(read_send_lag(run_dir)) == sent
    assert all(s["steps"] >= s["frames_sent"] for s in sessions)  # a Step per frame (1B config), none lost
