"""The condition language (yapbench.slo): parsing, units, aliases, paths, errors that name the expression."""

from __future__ import annotations

import pytest

from yapbench.slo import Kind, SloError, parse_condition, parse_path

SUMMARY = {
    "first_word": {"count": 10, "p95": 900.0},
    "backlog_max": {"count": 10, "p99": 170.0},
    "rejection_rate": 0.005,
    "wer": 0.12,
    "outcomes": {"ok": 99, "rejected": 1},
    "targets": {"ws://10.0.0.1:8080": {"first_word": {"count": 5, "p95": 1100.0}}},
    "wer_by_sample": {"jfk.flac": {"wer": 0.2}},
    "end_of_turn_detect": {"count": 120, "p95": 760.0},
    "turn_first_word": {"count": 120, "p95": 1300.0},
    "false_end_of_turn_rate": 0.02,
    "turns": 120,
}


@pytest.mark.parametrize("expr, passed", [
    ("first_word.p95<=1000ms", True),
    ("first_word.p95 <= 0.8s", False),
    ("first_word_ms.p95 < 901", True),
    ("backlog.p99<=160ms", False),
    ("rejection_rate<=1%", True),
    ("rejection_rate<=0", False),
    ("rejection_rate < 0.01", True),
    ("wer >= 12%", True),
    ("outcomes.ok == 99", True),
    ("outcomes.rejected > 0", True),
    ("targets.ws://10.0.0.1:8080.first_word.p95 <= 1s", False),
    ("wer_by_sample.jfk.flac.wer <= 25%", True),
    ("end_of_turn_detect.p95<=800ms", True),  # conversations (--conversation): per-turn metrics and rates
    ("end_of_turn_detect_ms.p95 < 0.75s", False),
    ("turn_first_word.p95<=1.2s", False),
    ("false_end_of_turn_rate<=1%", False),
    ("turns >= 100", True),
])
def test_evaluate(expr: str, passed: bool) -> None:
    assert parse_condition(expr).check(SUMMARY).passed is passed


def test_units_convert_to_summary_units() -> None:
    assert parse_condition("first_word.p95<=1.5s").limit == 1500.0
    assert parse_condition("error_rate<=2.5%").limit == pytest.approx(0.025)
    assert parse_path("backlog_ms.p99").keys == ("backlog_max", "p99")
    assert parse_path("send_lag.count").kind is Kind.NUMBER


def test_unobserved_metric_fails_with_no_value() -> None:
    result = parse_condition("finalize.p95<=1s").check(SUMMARY)
    assert result.value is None and not result.passed


@pytest.mark.parametrize("expr, message", [
    ("frist_word.p95<=1s", "unknown metric 'frist_word'"),
    ("first_word<=1s", "needs one statistic"),
    ("first_word.p42<=1s", "needs one statistic"),
    ("first_word.p95<=5%", "does not fit"),
    ("rejection_rate<=5ms", "does not fit"),
    ("outcomes.okay>=1", "expected outcomes.<outcome>"),
    ("outcomes.ok>=1ms", "does not fit"),
    ("wer.p95<=1", "single number"),
    ("end_of_turn_detect<=800ms", "needs one statistic"),
    ("false_end_of_turn_rate<=5ms", "does not fit"),
    ("first_word.p95 => 1s", "expected PATH OP VALUE"),
    ("first_word.p95 <= fast", "not a number"),
])
def test_errors_name_the_expression(expr: str, message: str) -> None:
    with pytest.raises(SloError) as info:
        parse_condition(expr)
    assert repr(expr) in str(info.value) and message in str(info.value)
