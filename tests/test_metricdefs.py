"""One registry of metrics (yapbench.metricdefs): each entry reaches the records, the run directory, the summary,
the conditions of gates and goodput objectives, the plain-text headline and the docs, under the registry's names.
(The STT tab and Locust's statistics run in a Locust process: tests/test_webui.py, tests/test_locust_runs.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from yapbench.gates import Status, evaluate
from yapbench.goodput import parse_objective
from yapbench.metricdefs import METRICS, SESSION_FIELDS, START_LAG, Source
from yapbench.report import summarize_run
from yapbench.report.synthetic import Spec, make_run
from yapbench.report.text import headline
from yapbench.metrics import SessionResult, TurnTiming, WordTiming
from yapbench.runlog import SESSION_BIN_DTYPE, SESSION_COLUMNS, TURN_DTYPE, WORD_DTYPE
from yapbench.slo import SloError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("registry") / "run", Spec(sessions=60, rejected=0.0, failed=0.0, seed=5))


def test_every_metric_is_defined_in_the_docs() -> None:
    # defined by its suffixed name (`first_word_ms`), or a turn's by its field (`end_of_turn_ms`), as a table row
    definitions = "".join((REPO / "docs" / doc).read_text(encoding="utf-8")
                          for doc in ("metrics.md", "run-directory.md"))
    summary_names = next(line for line in (REPO / "docs" / "report.md").read_text(encoding="utf-8").splitlines()
                         if line.startswith("| `<metric>.<stat>`"))
    for m in METRICS:
        assert f"| `{m.suffixed}`" in definitions or f"| `{m.field}`" in definitions, f"{m.name} is not defined"
        assert f"`{m.name}`" in summary_names, f"docs/report.md does not list {m.name} among the summary's metrics"


def test_each_metric_is_a_field_of_its_record_and_a_column_of_its_file(run: Path) -> None:
    where = {Source.SESSION: (SessionResult, set(SESSION_COLUMNS) & set(SESSION_BIN_DTYPE.names or ())),
             Source.WORD: (WordTiming, set(WORD_DTYPE.names or ())),
             Source.TURN: (TurnTiming, set(TURN_DTYPE.names or ())),
             Source.ARRIVAL: (SessionResult, set(SESSION_COLUMNS))}  # send_lag: its own file, send_lag.bin
    for m in METRICS:
        if m.source in where:
            record, columns = where[m.source]
            assert m.field in record.__dataclass_fields__ and m.field in columns, m.name
    first = json.loads((run / "sessions.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first["outcome"] == "ok"
    for field in SESSION_FIELDS:
        assert isinstance(first[field], float), field


def test_every_metric_reaches_the_summary_and_the_gates_under_its_names(run: Path) -> None:
    summary = summarize_run(run)
    for m in METRICS:
        if m is START_LAG or m.source == Source.TURN:  # open loop, conversations: test_openloop, test_conversation
            assert summary[m.name] == {"count": 0}
            continue
        top = summary[m.name]["max"]
        assert summary[m.name]["count"] > 0, m.name
        verdict = evaluate(summary, [f"{m.name}.max <= {top}ms", f"{m.suffixed}.max < {top}ms"])
        assert [r.status for r in verdict.results] == [Status.PASS, Status.FAIL], m.name


def test_the_headline_has_a_row_per_headline_metric(run: Path) -> None:
    rows = [line.split()[0] for line in headline(summarize_run(run)).splitlines()
            if line.split() and line.split()[0] in {m.name for m in METRICS}]
    # a run without conversations has no turn rows (test_conversation checks a run with them)
    assert rows == [m.name for m in METRICS if m.headline and m.source != Source.TURN]


def test_goodput_objectives_take_per_session_and_per_word_metrics_only() -> None:
    for m in METRICS:
        text = f"{m.name}.max<=1000ms" if m.source == Source.WORD else f"{m.name}<=1000ms"
        if m.source in (Source.SESSION, Source.WORD):
            objective = parse_objective(text)
            assert (objective.metric, objective.column, objective.limit_ms) == (m.name, m.field, 1000.0)
        else:
            with pytest.raises(SloError, match=m.name):
                parse_objective(text)
