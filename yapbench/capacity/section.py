"""The capacity search's part of the report: its answer, the levels it measured and the curve, as a report Section."""

from __future__ import annotations

import json
from pathlib import Path

from ..report.section import Section
from . import CAPACITY_JSON


def report_section(run_dir: Path) -> Section | None:
    """The Capacity section when the run was a `yapbench capacity` search (capacity.json), with capacity.png drawn;
    None otherwise, or when capacity.json cannot be read (the rest of the report still gets built)."""
    path = Path(run_dir) / CAPACITY_JSON
    try:
        answer = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    except (OSError, json.JSONDecodeError):
        return None
    if answer is None:
        return None
    if answer.get("model") == "open":
        return _open_section(answer, run_dir)
    from .answer import answer_lines
    from .plot import plot_capacity

    levels = answer["levels"]
    slo_columns = tuple(levels[0]["values"]) if levels else ()
    rows = tuple((lv["users"], "holds" if lv["passed"] else "breaks",
                  ", ".join(lv["broken"] + (["generator send lag"] if lv["generator_bound"] else [])),
                  _percent(lv["rejection_rate"]), *lv["values"].values()) for lv in levels)
    header = ("conversations" if answer.get("conversation") else "streams", "verdict", "broken", "rejections",
              *slo_columns)
    return Section("Capacity", tuple(answer_lines(answer)), header, rows, plot_capacity(answer, run_dir).name)


def _open_section(answer: dict, run_dir: Path) -> Section:
    """`--model open`: one row per arrival rate; the curve is blocking and goodput against offered Erlangs."""
    from .opensearch import open_answer_line
    from .plot import plot_open_capacity

    rows = tuple((lv["rate"], lv["traffic"].get("offered_erlangs"), lv["traffic"].get("carried_erlangs"),
                  _percent(lv["traffic"].get("blocking")), _percent(lv["traffic"].get("erlang_b")),
                  _percent(lv["traffic"].get("goodput")), lv["dropped"], "holds" if lv["passed"] else "breaks",
                  ", ".join(lv["broken"] + (["generator"] if lv["generator_bound"] else [])))
                 for lv in answer["levels"])
    return Section("Capacity (open model)", (open_answer_line(answer),),
                   ("sessions/s", "offered (Erl)", "carried (Erl)", "blocking", "Erlang B", "goodput", "dropped",
                    "verdict", "broken"), rows, plot_open_capacity(answer, run_dir).name)


def _percent(v: object) -> object:
    return f"{100 * v:.2f}%" if isinstance(v, float) else v
