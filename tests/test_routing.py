"""Sessions over a fleet: `--target-policy least_loaded` sends each new session to the target with the most free
slots (its /api/modules_info), round_robin alternates. Real reference servers on loopback, of different sizes."""

from __future__ import annotations

import subprocess

from test_locust_runs import REPO, locust_cmd, server_counts


def fleet_run(ref_server, tmp_path, policy: str) -> tuple[dict, dict]:
    small = ref_server(batch_size=2, step_ms=1, event_log=True)
    large = ref_server(batch_size=16, step_ms=1, event_log=True)
    # Users start 2 a second, each streams a 1.5 s clip in real time, back to back: about 5 sessions start a second,
    # fewer than the large server's free slots, so the policy's count of sessions started since the last poll (every
    # second) never makes it look full.
    cmd = locust_cmd(f"{small.url},{large.url}", tmp_path / policy, "--target-policy", policy, "-r", "2",
                     "--samples", "real/en_ljspeech_LJ002-0020.wav", "--speed", "1", users=8, run_time="10s")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=REPO)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return server_counts(small.event_log), server_counts(large.event_log)


def test_least_loaded_sends_sessions_where_slots_are_free(ref_server, tmp_path):
    # 8 users: the large server always has at least 8 free slots, the small one at most 2. Only a session that
    # starts before the first poll of /api/modules_info answers (round robin meanwhile) may land on the small one.
    small, large = fleet_run(ref_server, tmp_path, "least_loaded")
    assert large["accepted"] >= 10 and large["rejected"] == 0, (small, large)  # users streamed several sessions
    assert small["accepted"] + small["rejected"] <= 2, (small, large)


def test_round_robin_alternates_whatever_the_free_slots(ref_server, tmp_path):
    small, large = fleet_run(ref_server, tmp_path, "round_robin")
    tried_small = small["accepted"] + small["rejected"]
    tried_large = large["accepted"] + large["rejected"]
    assert tried_small + tried_large >= 10 and tried_small >= (tried_small + tried_large) / 4, (small, large)
    assert small["rejected"] > 0, (small, large)  # about 4 users' sessions at a time on 2 slots
