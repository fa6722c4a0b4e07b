"""Gates that do not flake: a percentile from too few values is neither passed nor failed, and a regression beyond
its tolerance fails only when the change is significant (a bootstrap interval from both runs' raw records)."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from yapbench.cli import main as cli
from yapbench.report.synthetic import Spec, make_run
from yapbench.uncertainty import difference, quantile_replicates
from yapbench.slo import parse_path


def scaled(src: Path, dst: Path, factor: float) -> Path:
    """A copy of a run whose every first word is `factor` times later (nothing else changes). sessions.bin holds
    the lines' numbers too: it goes, and the edited lines are decoded instead."""
    shutil.copytree(src, dst)
    (dst / "sessions.bin").unlink(missing_ok=True)
    lines = [json.loads(line) for line in (src / "sessions.jsonl").read_text().splitlines()]
    for rec in lines:
        if rec["first_word_ms"] is not None:
            rec["first_word_ms"] *= factor
    (dst / "sessions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return dst


def gates(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gates.toml"
    p.write_text(text)
    return p


def cases(xml: Path) -> dict[str, ET.Element]:
    return {c.get("name"): c for c in ET.parse(xml).getroot().iter("testcase")}


def test_p99_of_40_values_is_reported_as_too_few_not_passed_or_failed(tmp_path, capsys):
    run = make_run(tmp_path / "small", Spec(sessions=40, rejected=0.0, failed=0.0, gpu=False, seed=3))
    g = gates(tmp_path, '[[gate]]\ncondition = "first_word.p99 <= 1ms"\n\n'  # would fail on any value
                        '[[gate]]\ncondition = "first_word.p99 <= 100s"\n\n'  # would pass on any value
                        '[[gate]]\ncondition = "first_word.p50 <= 100s"\n')  # 40 values are plenty for a median
    xml = tmp_path / "g.xml"
    assert cli(["gate", str(run), "--gates", str(g), "--junit", str(xml)]) == 0
    out = capsys.readouterr().out
    assert out.count("too few values for p99: 40, it needs >= 500") == 2
    assert "2 gate(s) not judged: too few values for their percentile" in out
    c = cases(xml)
    assert c["first_word.p99 <= 1.0 ms"].find("skipped") is not None
    assert c["first_word.p50 <= 100000.0 ms"].find("system-out") is not None  # judged: passed


def test_a_percentile_with_enough_values_is_judged(tmp_path):
    run = make_run(tmp_path / "big", Spec(sessions=600, rejected=0.0, failed=0.0, gpu=False, seed=4))
    g = gates(tmp_path, '[[gate]]\ncondition = "first_word.p99 <= 1ms"\n')
    assert cli(["gate", str(run), "--gates", str(g), "--junit", str(tmp_path / "g.xml")]) == 1


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("noise") / "base",
                    Spec(sessions=300, rejected=0.0, failed=0.0, gpu=False, seed=11))


def test_a_change_beyond_tolerance_inside_the_noise_passes_and_says_why(base, tmp_path, capsys):
    other = scaled(base, tmp_path / "other", 1.03)  # +3% on p95 of 300 sessions: well inside the noise
    g = gates(tmp_path, '[[regression]]\nmetric = "first_word.p95"\nmax_increase = "1%"\n')
    assert cli(["gate", str(other), "--gates", str(g), "--baseline", str(base)]) == 0
    out = capsys.readouterr().out
    assert "+3.0% vs baseline" in out and "beyond the limit but not significant: 95% CI of the difference" in out


def test_a_large_change_beyond_tolerance_fails(base, tmp_path, capsys):
    other = scaled(base, tmp_path / "other", 1.5)
    g = gates(tmp_path, '[[regression]]\nmetric = "first_word.p95"\nmax_increase = "1%"\nconfidence = "99%"\n')
    assert cli(["gate", str(other), "--gates", str(g), "--baseline", str(base)]) == 1
    out = capsys.readouterr().out
    assert "+50.0% vs baseline" in out and "99% CI of the difference [+" in out


def test_a_significant_change_inside_tolerance_passes(base, tmp_path):
    other = scaled(base, tmp_path / "other", 1.5)
    g = gates(tmp_path, '[[regression]]\nmetric = "first_word.p95"\nmax_increase = "60%"\n')
    assert cli(["gate", str(other), "--gates", str(g), "--baseline", str(base)]) == 0


def test_a_bare_summary_baseline_falls_back_to_the_tolerance_and_says_so(base, tmp_path, capsys):
    other = scaled(base, tmp_path / "other", 1.03)
    cli(["report", str(base)])
    summary_only = tmp_path / "baseline-summary.json"
    summary_only.write_bytes((base / "summary.json").read_bytes())
    g = gates(tmp_path, '[[regression]]\nmetric = "first_word.p95"\nmax_increase = "1%"\n')
    capsys.readouterr()
    assert cli(["gate", str(other), "--gates", str(g), "--baseline", str(summary_only)]) == 1
    assert "significance not tested (needs both run directories" in capsys.readouterr().out


def test_confidence_must_be_a_sensible_level(base, tmp_path, capsys):
    g = gates(tmp_path, '[[regression]]\nmetric = "first_word.p95"\nmax_increase = "1%"\nconfidence = "150%"\n')
    assert cli(["gate", str(base), "--gates", str(g), "--baseline", str(base)]) == 2
    assert "line 4" in capsys.readouterr().err


def test_the_interval_of_a_difference_covers_the_truth_at_its_rate():
    """Two samples of 200 from the same distribution, 200 times: the 95% interval of the p95 difference excludes
    zero (a false alarm) in about 5% of pairs, not more: the gate's error rate is the confidence it was given."""
    rng = np.random.default_rng(7)
    false_alarms = 0
    for i in range(200):
        a, b = rng.lognormal(6, 0.4, size=(2, 200))
        iv = difference(quantile_replicates(a, 0.95, np.random.default_rng(i)),
                        quantile_replicates(b, 0.95, np.random.default_rng(10_000 + i)))
        false_alarms += iv.significant
    assert false_alarms <= 20, false_alarms  # 5% of 200 is 10; a binomial tail above 20 is < 0.1%


def test_min_samples_per_percentile():
    assert parse_path("first_word.p99").min_samples == 500
    assert parse_path("first_word.p95").min_samples == 100
    assert parse_path("first_word.p50").min_samples == 10
    assert parse_path("first_word.max").min_samples is None
