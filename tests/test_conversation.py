"""Conversations: several turns on one connection against the reference server, per-turn metrics, the option."""

from __future__ import annotations

import argparse
import json
import math
import subprocess

import numpy as np

import pytest

from yapbench.audio import load_clip
from yapbench.conversation import ConversationSpec, build_conversation, parse_conversation
from yapbench.endofturn import EndOfTurnRule, Smoothing
from yapbench.metrics import Outcome
from yapbench.options import On, add_cli_options
from yapbench.protocol import FRAME_SECONDS, Step
from yapbench.samples import DEFAULT_MANIFEST
from yapbench.gates import check_run
from yapbench.report import build_report
from yapbench.report.text import headline
from yapbench.runlog import read_session_records, read_turns
from yapbench.server.engines.pause import loud_rows
from yapbench.session import SessionConfig, run_session
from yapbench.streamer import prepare_clip

from test_locust_runs import REPO, locust_cmd

FIRST, SECOND = "real/en_ljspeech_LJ002-0020.wav", "real/en_ljspeech_LJ002-0035.wav"  # "In eighteen thirteen", ...
PAUSE_S = 2.5


SPEED = 2.0


@pytest.fixture(scope="module")
def pcm():
    return {name: load_clip(DEFAULT_MANIFEST.parent / name).frames() for name in (FIRST, SECOND)}


@pytest.fixture(scope="module")
def two_turns(pcm):
    return build_conversation([prepare_clip(name, frames) for name, frames in pcm.items()], [PAUSE_S, PAUSE_S])


def expected_end_of_turn_ms(frames: np.ndarray, horizon_s: float = 2.0) -> float:
    """When a reference head reaches 0.5 (1 - exp(-silence / horizon), prs[2]'s horizon 2 s): the frame that
    completes horizon x ln 2 s of silence after the turn's last loud frame, as sent after the turn's last frame."""
    last_loud = int(np.flatnonzero(loud_rows(frames))[-1])
    crossing = last_loud + math.ceil(horizon_s * math.log(2.0) / FRAME_SECONDS)
    return (crossing - (len(frames) - 1)) * FRAME_SECONDS / SPEED * 1000.0


def test_the_spec_parses_ranges_and_fixed_values():
    assert parse_conversation("turns=3-6,pause=1.5-4s") == ConversationSpec((3, 6), (1.5, 4.0))
    assert parse_conversation("turns=3, pause=2s") == ConversationSpec((3, 3), (2.0, 2.0))
    assert parse_conversation("") is None
    spec = parse_conversation("turns=2,pause=2s,head=0,threshold=0.7,smoothing=unmute,flush=turn")
    assert spec == ConversationSpec((2, 2), (2.0, 2.0), EndOfTurnRule(0, 0.7, Smoothing.UNMUTE), flush_turns=True)


@pytest.mark.parametrize("bad, says", [
    ("turns=3", "pause missing"),
    ("turns=3,pause=2", "unit"),
    ("turns=6-3,pause=1s", "backwards"),
    ("turns=2.5,pause=1s", "whole numbers"),
    ("turn=2,pause=1s", "'turn=2' is not one of turns, pause"),
    ("turns=2,pause=1s,head=-1", "an index from 0"),
    ("turns=2,pause=1s,threshold=1.5", "a probability in (0, 1]"),
    ("turns=2,pause=1s,threshold=high", "threshold in (0, 1]"),
    ("turns=2,pause=1s,smoothing=ema", "smoothing one of none, unmute"),
    ("turns=2,pause=1s,flush=never", "flush='never' is not one of end, turn"),
])
def test_bad_specs_are_refused_on_the_command_line_with_the_reason(bad, says, capsys):
    parser = argparse.ArgumentParser(prog="yapbench run")
    add_cli_options(parser, On.RUN)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(["--conversation", bad])
    assert exit_.value.code == 2
    assert says in capsys.readouterr().err


def test_pauses_are_shared_silence_frames_between_the_turns(two_turns):
    first, second = two_turns.turns
    assert (first.sample, second.sample) == (FIRST, SECOND)
    assert first.start == 0 and second.start - first.end == round(PAUSE_S / FRAME_SECONDS)
    assert two_turns.n_frames - second.end == second.start - first.end  # the last turn has its pause too
    pauses = two_turns.frames[first.end:second.start] + two_turns.frames[second.end:]
    assert all(f is two_turns.silence for f in pauses)  # one pre-built frame object, not one per pause frame


def test_each_turn_gets_its_words_and_its_end_of_turn_detection(ref_server, two_turns, pcm):
    server = ref_server(step_ms=2)  # the stt-1b-en_fr config: Steps with four pause heads
    r = run_session(SessionConfig(server.url, speed=SPEED), two_turns)
    assert r.outcome == Outcome.OK, r.error
    assert r.frames_sent == two_turns.n_frames and r.end_of_turn_signal is True
    first, second = r.turns
    assert first.transcript.lower() == "in eighteen thirteen"
    assert second.transcript.lower().startswith("eight") and "press yard" in second.transcript.lower()
    assert first.pause_after_s == second.pause_after_s == pytest.approx(PAUSE_S, abs=FRAME_SECONDS)
    for turn in r.turns:
        assert turn.first_word_ms is not None and turn.first_word_ms > 0
        assert turn.end_ms is not None
        assert turn.false_end_of_turn == 0
        # Detected on the Step of the crossing frame: never before that frame is sent, and soon after it (each
        # 2.5 s pause holds the 1.39 s the heads need).
        expected = expected_end_of_turn_ms(pcm[turn.sample])
        assert turn.end_of_turn_ms is not None and expected - 5 < turn.end_of_turn_ms < expected + 300, (expected, turn)


def test_unmute_smoothing_ignores_the_first_twelve_steps_then_follows_the_head_closely():
    raw = EndOfTurnRule(threshold=0.5).detector()
    smooth = EndOfTurnRule(threshold=0.5, smoothing=Smoothing.UNMUTE).detector()
    assert raw.above((0.0, 0.0)) is None and not raw.signal  # no prs[2]: nothing to judge, no signal
    speech, pause = (0.02, 0.02, 0.02, 0.02), (0.9, 0.9, 0.9, 0.9)
    assert [smooth.above(speech) for _ in range(12)] == [None] * 12 and smooth.signal
    assert smooth.above(speech) is False  # from 1.0 to within 0.4 % of the raw value in one Step
    assert smooth.above(pause) is True and raw.above(pause) is True and raw.above(speech) is False
    just_below = (0.02, 0.02, 0.499, 0.02)  # from 0.9, the smoothed value lags 0.4 % of the step: still above
    assert smooth.above(just_below) is True and raw.above(just_below) is False


def test_a_chosen_head_threshold_and_a_flush_per_turn(ref_server, pcm):
    """head=0 (the 0.5 s pause head) detects each turn's end sooner than prs[2]; flush=turn echoes a Marker per
    turn during the conversation, the final one still ends it."""
    server = ref_server(step_ms=2)
    clip = build_conversation([prepare_clip(name, frames) for name, frames in pcm.items()], [PAUSE_S, PAUSE_S],
                              EndOfTurnRule(head=0), flush_turns=True)
    r = run_session(SessionConfig(server.url, speed=SPEED), clip)
    assert r.outcome == Outcome.OK, r.error
    for turn in r.turns:
        expected = expected_end_of_turn_ms(pcm[turn.sample], horizon_s=0.5)
        assert turn.end_of_turn_ms is not None and expected - 5 < turn.end_of_turn_ms < expected + 300, (expected, turn)
        # echoed a few model steps after the turn's end, within its pause (the final Marker comes after it)
        assert turn.flush_ms is not None and 0 < turn.flush_ms < PAUSE_S / SPEED * 1000, turn
        assert turn.words > 0
    assert abs(r.turns[0].flush_ms - r.turns[1].flush_ms) < 50  # the same model delay after each turn


def test_the_reference_pause_heads_are_low_in_speech_and_rise_through_silence(ref_server, two_turns):
    """What the end-of-turn metric reads, as the client receives it: per Step (one per frame, in order), the four
    heads stay at their floor through speech and rise steadily through each pause, the shortest horizon first."""
    steps: list[tuple[float, ...]] = []

    def listen(stream, msg, now) -> None:
        if isinstance(msg, Step):
            steps.append(msg.prs)

    r = run_session(SessionConfig(ref_server(step_ms=2).url, speed=SPEED), two_turns, listener=listen)
    assert r.outcome == Outcome.OK, r.error
    prs = np.array(steps[: two_turns.n_frames])  # Steps past the conversation's frames are the flush's
    assert prs.shape == (two_turns.n_frames, 4)
    bounds = [t.start for t in two_turns.turns[1:]] + [two_turns.n_frames]
    for turn, pause_end in zip(two_turns.turns, bounds):
        speech, pause = prs[turn.start:turn.end], prs[turn.end:pause_end]
        assert np.median(speech[:, 2]) <= 0.05 and speech[:, 2].max() < 0.5  # gaps between words never end a turn
        assert (np.diff(pause, axis=0) >= 0).all() and pause[-1, 2] > 0.5  # rising through the 2.5 s of silence
        assert (pause[:, :-1] >= pause[:, 1:]).all()  # a pause within 0.5 s is likelier than one within 3 s


def test_a_last_pause_too_short_for_the_head_is_a_missed_end_not_one_found_in_the_flush(ref_server, pcm):
    """The last turn's pause ends two frames before prs[2] would reach 0.5: the silence of the final flush, which
    belongs to no turn, would cross it, and must not count as that turn's end."""
    crossing = round(expected_end_of_turn_ms(pcm[SECOND]) / 1000 * SPEED / FRAME_SECONDS)  # frames after its end
    clip = build_conversation([prepare_clip(name, frames) for name, frames in pcm.items()],
                              [PAUSE_S, (crossing - 2) * FRAME_SECONDS])
    r = run_session(SessionConfig(ref_server(step_ms=2).url, speed=SPEED), clip)
    assert r.outcome == Outcome.OK and r.end_of_turn_signal is True, r.error
    assert r.turns[0].end_of_turn_ms is not None and r.turns[1].end_of_turn_ms is None
    assert r.turns[1].words > 0


def test_a_server_without_steps_records_no_end_of_turn_signal(ref_server, two_turns):
    server = ref_server(config="config-stt-en-hf.toml", step_ms=2)  # stt-2.6b-en: no extra heads, no Steps
    r = run_session(SessionConfig(server.url, speed=SPEED), two_turns)
    assert r.outcome == Outcome.OK, r.error
    assert r.steps == 0 and r.end_of_turn_signal is False
    assert [t.end_of_turn_ms for t in r.turns] == [None, None]
    assert all(t.words > 0 for t in r.turns)


@pytest.mark.parametrize("config", [None, "config-stt-en-hf.toml"])
def test_a_locust_run_of_conversations_records_summarizes_and_gates_the_turns(ref_server, tmp_path, config):
    server = ref_server(step_ms=2, **({"config": config} if config else {}))
    cmd = locust_cmd(server.url, tmp_path, "--samples", f"{FIRST},{SECOND}", "--conversation", "turns=2,pause=2.5s",
                     users=2, run_time="4s")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    records = read_session_records(tmp_path)
    ok = [r for r in records if r["outcome"] == "ok"]
    assert len(ok) >= 2
    for r in ok:
        assert len(r["turns"]) == 2 and r["end_of_turn_signal"] is (config is None)
        assert r["sample"] == "+".join(t["sample"] for t in r["turns"])
        assert all(t["words"] > 0 and 0 < t["start_s"] < t["end_s"] for t in r["turns"])
        assert all((t["end_of_turn_ms"] is not None) is (config is None) for t in r["turns"])
    # turns.bin holds the same turns, in columns, keyed by their session's line
    turns = read_turns(tmp_path, len(records))
    want = [(i, k) for i, r in enumerate(records) for k, _ in enumerate(r["turns"])]
    assert list(zip(turns["session"].tolist(), turns["idx"].tolist())) == want
    nan = float("nan")
    assert turns["end_ms"] == pytest.approx([nan if t["end_ms"] is None else t["end_ms"]
                                             for r in records for t in r["turns"]], rel=1e-6, nan_ok=True)

    summary = json.loads((tmp_path / "summary.json").read_text())
    served = summary["sessions"] - summary["outcomes"]["rejected"]
    assert summary["turns"] == 2 * served and summary["run"]["conversation"] == "turns=2,pause=2.5s"
    assert summary["turn_first_word"]["count"] >= 2 * summary["outcomes"]["ok"]
    speech = sum(t["speech_s"] for r in ok for t in r["turns"])
    assert summary["speech_share"] == pytest.approx(speech / (speech + PAUSE_S * 2 * len(ok)), rel=0.1)
    assert summary["wer"] == 0  # each conversation scored against its turns' transcripts, in turn order
    assert list(summary["wer_by_sample"]) == ["(conversations)"]
    lines = headline(summary).splitlines()  # the terminal's summary: the turns' line and their latency rows
    assert any(line.startswith(f"turns {summary['turns']}: false end of turn") for line in lines)
    assert any(line.split()[:2] == ["turn_first_word", str(summary["turn_first_word"]["count"])] for line in lines)
    gates = tmp_path / "gates.toml"
    gates.write_text('[[gate]]\ncondition = "end_of_turn_detect.max <= 2500ms"\n'
                     '[[gate]]\ncondition = "false_end_of_turn_rate == 0"\n'
                     '[[gate]]\ncondition = "turn_first_word_ms.max <= 3s"\n')
    verdict = check_run(tmp_path, gates)
    build_report(tmp_path)  # the per-turn CDFs and one conversation's timeline, in the page
    html = (tmp_path / "report.html").read_text()
    for png in ("turn_cdf.png", "conversation.png"):
        assert f'<img src="{png}"' in html and (tmp_path / png).read_bytes()[:4] == b"\x89PNG"
    if config is None:
        assert summary["end_of_turn_detect"]["count"] == summary["turns"]
        assert summary["false_end_of_turn_rate"] == 0 and summary["end_of_turn_missed_rate"] == 0
        assert not any("end-of-turn" in note for note in summary["notes"])
        assert verdict.passed, verdict.table()
    else:  # stt-2.6b-en: no Steps, nothing to detect the end of a turn with, one line that says so, no verdict
        assert summary["end_of_turn_detect"] == {"count": 0} and summary["false_end_of_turn_rate"] is None
        assert sum("no end-of-turn signal" in note for note in summary["notes"]) == 1
        assert [r.name.split()[0] for r in verdict.failures] == ["end_of_turn_detect.max", "false_end_of_turn_rate"]
        assert all(r.value == "no data" for r in verdict.failures), verdict.table()


def test_conversations_arrive_on_a_schedule_too(ref_server, tmp_path):
    """The open loop (--arrival-rate): each arrival is a conversation, due on time, with its turns."""
    cmd = locust_cmd(ref_server(step_ms=2).url, tmp_path, "--samples", f"{FIRST},{SECOND}", "--conversation",
                     "turns=2,pause=2s", "--arrival-rate", "2", "--arrival", "constant", users=8, run_time="4s")
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    ok = [r for r in read_session_records(tmp_path) if r["outcome"] == "ok"]
    assert len(ok) >= 4
    assert all(r["due_at"] is not None and len(r["turns"]) == 2 and r["end_of_turn_signal"] for r in ok)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["end_of_turn_detect"]["count"] > 0 and summary["offered_erlangs"] > 0

