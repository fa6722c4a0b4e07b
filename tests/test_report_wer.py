"""WER: known transcripts with known errors, the normalisation, per sample and overall."""

from __future__ import annotations

from pathlib import Path

import pytest

from yapbench.metrics import Outcome, SessionResult, WordTiming
from yapbench.report import summarize_run
from yapbench.report.wer import normalise
from yapbench.runlog import RunLog

REFERENCE = "The quick brown fox jumps over the lazy dog."  # 9 words


def write_run(run: Path, transcripts: list[tuple[str, str, Outcome]], samples: dict[str, str]) -> Path:
    log = RunLog(run)
    log.write_meta({"target": "ws://x:1", "started_at": 1000.0, "ended_at": 1010.0,
                    "samples": {name: {"transcript": text, "language": "en", "duration_s": 3.0}
                                for name, text in samples.items()}})
    for i, (sample, text, outcome) in enumerate(transcripts):
        res = SessionResult(session_id=f"s{i}", target="ws://x:1", sample=sample, speed=1.0,
                            started_at=1000.0 + i, ended_at=1003.0 + i, outcome=outcome)
        res.words = [WordTiming(text=w, start_time=k * 0.3, recv_ms=500.0 + k, lag_ms=500.0)
                     for k, w in enumerate(text.split())]
        log.write_result(res)
    log.close()
    return run


def test_normalisation() -> None:
    assert normalise("  Hello, Real-time   WORLD!  don't ") == "hello real time world dont"
    assert normalise("L'homme — enfin… «oui»") == "lhomme enfin oui"


def test_known_errors(tmp_path: Path) -> None:
    # one substitution (fox -> box), one deletion (the), one insertion (again): 3 errors / 9 words
    hyp = "the quick brown box jumps over lazy dog again"
    run = write_run(tmp_path / "run", [("fox", hyp, Outcome.OK), ("fox", "THE QUICK BROWN FOX, jumps over the "
                                                                          "lazy-dog", Outcome.OK)],
                    {"fox": REFERENCE})
    summary = summarize_run(run)
    # second session: "lazy-dog" normalises to "lazy dog": no error
    assert summary["wer_by_sample"]["fox"] == {"wer": pytest.approx(3 / 18), "sessions": 2, "ref_words": 18,
                                               "errors": 3}
    assert summary["wer"] == pytest.approx(3 / 18)
    assert summary["wer_sessions"]["max"] == pytest.approx(3 / 9)
    assert summary["wer_sessions"]["min"] == 0.0


def test_corpus_level_and_skips(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", [
        ("fox", "", Outcome.OK),  # nothing recognised: 9 deletions
        ("short", "hello there world", Outcome.OK),  # one insertion against 2 words
        ("fox", "the quick", Outcome.DISCONNECTED),  # cut short: not scored (already an error)
        ("unknown", "anything", Outcome.OK),  # no reference: skipped with a note
    ], {"fox": REFERENCE, "short": "Hello world", "empty": ""})
    summary = summarize_run(run)
    assert summary["wer_by_sample"]["fox"]["wer"] == 1.0
    assert summary["wer_by_sample"]["fox"]["sessions"] == 1
    assert summary["wer_by_sample"]["short"]["wer"] == pytest.approx(0.5)
    assert summary["wer"] == pytest.approx(10 / 11)  # total errors / total reference words, not a mean of rates
    assert "unknown" not in summary["wer_by_sample"]
    assert any("WER skipped" in n and "unknown" in n for n in summary["notes"])


def test_a_conversation_is_scored_against_its_turns_transcripts_in_order(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", [
        ("fox+short", "the quick brown fox jumps over the lazy dog hello world", Outcome.OK),  # both turns, in order
        ("short+fox", "the quick brown fox jumps over the lazy dog hello world", Outcome.OK),  # out of order
        ("short+unknown", "hello world anything", Outcome.OK),  # a turn without a reference: skipped
    ], {"fox": REFERENCE, "short": "Hello world"})
    summary = summarize_run(run)
    # pooled: 0 errors for the first, 4 for the second (2 deletions + 2 insertions) of 11 reference words each
    assert summary["wer_by_sample"] == {"(conversations)": {"wer": pytest.approx(4 / 22), "sessions": 2,
                                                            "ref_words": 22, "errors": 4}}
    assert [n for n in summary["notes"] if "WER skipped" in n] == [
        "WER skipped for 1 sample(s) without a reference transcript in run.json: unknown"]
