"""Sessions over a fleet: `--target-policy least_loaded` sends each new session to the target with the most free
slots (its /api/modules_info), round_robin alternates. Real reference servers on loopback, of different sizes; the
bookkeeping between two readings (yapbench.routing) on its own."""

from __future__ import annotations

import subprocess

from test_locust_runs import REPO, locust_cmd, server_counts

from yapbench.routing import LeastLoaded

A, B = "ws://10.0.0.1:8080", "ws://10.0.0.2:8080"


def readings(free: dict[str, int], round_: int = 1, rounds: dict[str, int] | None = None):
    """A poller's `free`: each target's free slots, read in `round_` (or its own round in `rounds`)."""
    return lambda t: (free.get(t), (rounds or {}).get(t, round_) if t in free else -1)


def test_an_ended_session_gives_its_slot_back_before_the_next_reading():
    # A reading of A with 2 free slots, B with 1; every session ends before the next: A always has more room.
    # (Counting starts only, the second session would see A and B level, and B, first in the list, would get it.)
    routing, free = LeastLoaded(), readings({A: 2, B: 1})
    picks = []
    for _ in range(10):
        picks.append(routing.pick([B, A], free))
        routing.ended(picks[-1], free)
    assert picks == [A] * 10


def test_sessions_started_since_the_reading_fill_a_target_until_the_next_reading():
    routing = LeastLoaded()
    free = readings({A: 3, B: 1})
    # A until it is down to B's room (level: the first in the list wins), then B
    assert [routing.pick([A, B], free) for _ in range(4)] == [A, A, A, B]
    assert routing.pick([A, B], free) == A  # both full (3 - 3, 1 - 1): the first in the list, now one over
    routing.ended(A, free)
    routing.ended(A, free)  # two of A's sessions ended: A has a free slot again, B none
    assert routing.pick([A, B], free) == A
    # a new reading counts every session started or ended before it: the counts start over
    assert routing.pick([A, B], readings({A: 0, B: 2}, 2)) == B
    assert routing.pick([A, B], readings({A: 2, B: 0}, 3)) == A


def test_a_target_that_missed_a_poll_round_keeps_the_sessions_counted_against_its_older_reading():
    routing = LeastLoaded()
    assert [routing.pick([A, B], readings({A: 3, B: 3})) for _ in range(4)] == [A, B, A, B]
    # Round 2 reads B only (A's poll timed out): A's reading is round 1's, and its two sessions since still count:
    # A has 3 - 2 = 1 free, B 2 by its new reading. (Forgetting A's sessions at B's new round would give A 3.)
    assert routing.pick([A, B], readings({A: 3, B: 2}, rounds={A: 1, B: 2})) == B


def test_a_target_without_a_reading_gets_a_session_only_when_none_has_one():
    routing = LeastLoaded()
    assert {routing.pick([A, B], readings({B: 0})) for _ in range(5)} == {B}  # B full, but A's room is unknown
    assert routing.pick([A, B], readings({}, 2)) == A


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
