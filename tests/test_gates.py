"""`yapbench gate`: pass, fail, baseline regression, JUnit, and bad gates files (exit 2 naming the line)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from yapbench.cli import main as cli
from yapbench.gates import Gate, Status, evaluate, load_gates, load_summary
from yapbench.report.synthetic import Spec, make_run
from yapbench.slo import parse_condition


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("gates")
    base = make_run(root / "base", Spec(sessions=120, rejected=0.0, failed=0.0, gpu=False, seed=8))
    slow = make_run(root / "slow", Spec(sessions=120, rejected=0.0, failed=0.0, gpu=False, seed=8))
    # Same sessions, every first word 30% later: a regression against `base`.
    lines = [json.loads(line) for line in (slow / "sessions.jsonl").read_text().splitlines()]
    for rec in lines:
        rec["first_word_ms"] *= 1.3
    (slow / "sessions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (slow / "sessions.bin").unlink()  # its numbers are the unedited ones: the report reads the JSON lines alone
    return base, slow


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gates.toml"
    p.write_text(text)
    return p


def junit(path: Path) -> ET.Element:
    return ET.parse(path).getroot().find("testsuite")


def test_passing_gates_exit_0(runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gates = write(tmp_path, '[[gate]]\ncondition = "first_word.p95 <= 2s"\n\n'
                            '[[gate]]\nmetric = "rejection_rate"\nmax = "1%"\n\n'
                            '[[gate]]\nmetric = "wer"\nmax = 0.3\n\n'
                            '[[gate]]\ncondition = "error_rate == 0"\n')
    xml = tmp_path / "out.xml"
    assert cli(["gate", str(runs[0]), "--gates", str(gates), "--junit", str(xml)]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "first_word.p95" in out
    suite = junit(xml)
    assert suite.get("tests") == "4" and suite.get("failures") == "0"
    assert suite.find("testcase/failure") is None


def test_failing_gate_exit_1_with_junit_failure(runs: tuple[Path, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    gates = write(tmp_path, '[[gate]]\ncondition = "first_word.p95 <= 100ms"\n\n'
                            '[[gate]]\ncondition = "outcomes.ok >= 1"\n')
    assert cli(["gate", str(runs[0]), "--gates", str(gates)]) == 1
    assert "FAIL" in capsys.readouterr().out
    suite = junit(runs[0] / "gates.xml")  # default place: the run directory
    assert suite.get("failures") == "1"
    failed = [c for c in suite.findall("testcase") if c.find("failure") is not None]
    assert [c.get("name") for c in failed] == ["first_word.p95 <= 100.0 ms"]


def test_baseline_regression_is_caught(runs: tuple[Path, Path], tmp_path: Path) -> None:
    base, slow = runs
    gates = write(tmp_path, '[[regression]]\nmetric = "first_word.p95"\nmax_increase = "10%"\n\n'
                            '[[regression]]\nmetric = "word_lag.p95"\nmax_increase = "10%"\n')
    xml = tmp_path / "r.xml"
    assert cli(["gate", str(slow), "--gates", str(gates), "--baseline", str(base), "--junit", str(xml)]) == 1
    cases = {c.get("name"): c for c in junit(xml).findall("testcase")}
    assert cases["first_word.p95 vs baseline (+10%)"].find("failure") is not None
    assert cases["word_lag.p95 vs baseline (+10%)"].find("failure") is None  # words were not touched
    # The same gates against itself pass; without a baseline, regressions are skipped, not failed.
    assert cli(["gate", str(base), "--gates", str(gates), "--baseline", str(base), "--junit", str(xml)]) == 0
    assert cli(["gate", str(slow), "--gates", str(gates), "--junit", str(xml)]) == 0
    assert junit(xml).get("skipped") == "2"


def test_evaluate_api_and_no_data(runs: tuple[Path, Path]) -> None:
    summary = load_summary(runs[0])
    verdict = evaluate(summary, ["first_word.p95<=5s", Gate(parse_condition("outcomes.rejected==0"))])
    assert verdict.passed and verdict.exit_code == 0
    # A metric nothing observed fails: a gate must not pass because nothing was measured.
    verdict = evaluate({**summary, "backlog_max": {"count": 0}}, ["backlog.p99<=160ms"])
    assert not verdict.passed and verdict.results[0].detail == "not observed"
    assert verdict.results[0].status is Status.FAIL


@pytest.mark.parametrize("text, line, message", [
    ('[[gate]]\ncondition = "first_word.p95 <= 1s"\n\n[[gate]]\nmetric = "first_word.p95"\nmax = "12%"\n',
     6, "unit '%' does not fit"),
    ('[[gate]]\ncondition = "first_word.p95 <= 1s"\n[[gate]]\nmetrc = "first_word.p95"\n', 4, "unknown key 'metrc'"),
    ('[[gate]]\ncondition = "first_word.p95 <= 1s\n', 2, "invalid TOML"),
    ('[[regression]]\nname = "x"\nmetric = "frist_word.p95"\nmax_increase = "5%"\n', 3, "unknown metric 'frist_word'"),
    ('[[gate]]\ncondition = "first_word.p95 ~ 1s"\n', 2, "expected PATH OP VALUE"),
    ('[[gate]]\nname = "only a name"\n', 1, "needs condition"),
    ('[thresholds]\nfirst_word = 1\n', 1, "unknown table or key 'thresholds'"),
])
def test_bad_gates_file_exit_2_naming_the_line(runs: tuple[Path, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               text: str, line: int, message: str) -> None:
    gates = write(tmp_path, text)
    assert cli(["gate", str(runs[0]), "--gates", str(gates)]) == 2
    err = capsys.readouterr().err
    assert str(gates) in err and message in err
    assert f"line {line}" in err


def test_unusable_run_dir_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gates = write(tmp_path, '[[gate]]\ncondition = "wer <= 0.3"\n')
    assert cli(["gate", str(tmp_path / "missing"), "--gates", str(gates)]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_load_gates_expands_min_and_max(tmp_path: Path) -> None:
    checks = load_gates(write(tmp_path, '[[gate]]\nname = "lag"\nmetric = "word_lag_ms.p99"\nmin = 0\nmax = "1.5s"\n'))
    assert [(c.title, c.condition.op, c.condition.limit) for c in checks] == [("lag (min)", ">=", 0.0),
                                                                            ("lag (max)", "<=", 1500.0)]
