"""Gates: thresholds and regression limits on a run's summary.json -> a verdict, a table, JUnit XML and an exit
code (0 pass, 1 fail, 2 unusable input).

The gates file (docs/gates.md is the reference):

    [[gate]]                                  # a threshold, as a condition ...
    condition = "first_word.p95 <= 1200ms"

    [[gate]]                                  # ... or as a metric and bounds
    metric = "rejection_rate"
    max = "1%"

    [[regression]]                            # against --baseline: % is relative to the baseline's value
    metric = "first_word.p95"
    max_increase = "10%"
    confidence = "95%"                        # and the change must be significant (bootstrap) to fail

A percentile from too few values to mean anything (p99 of 40 sessions) is neither passed nor failed: the gate
says "too few" and how many values it needs. A regression beyond its tolerance fails only when the difference is
also significant at its confidence (a bootstrap interval of the difference, from both runs' raw records); with a
bare summary.json for either run that cannot be tested, and the tolerance alone decides (the detail says so).

Paths and units are those of the condition language (yapbench.slo). A metric the run did not observe fails its
gate ("no data"); a path that is not in the schema, or a malformed file, is unusable input (exit 2).
`check_run()` gates a run directory and `publish()` shows the verdict: `yapbench gate` (commands/gate.py) and the
end of every run with --gates (finish.py) use them; `evaluate()` gates a summary already in hand.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence, TypeVar

from .errors import UserError
from .slo import Condition, Kind, MetricPath, SloError, parse_condition, parse_path, parse_value

if TYPE_CHECKING:
    from .uncertainty import Interval

GATE_KEYS = frozenset({"name", "condition", "metric", "max", "min"})
REGRESSION_KEYS = frozenset({"name", "metric", "max_increase", "max_decrease", "confidence"})
DEFAULT_CONFIDENCE = 0.95
JUNIT = "gates.xml"
T = TypeVar("T")


@dataclass(frozen=True)
class Gate:
    """A threshold on one number of the run's summary."""

    condition: Condition
    name: str = ""
    line: int | None = None  # in the gates file, for messages

    @property
    def title(self) -> str:
        return self.name or str(self.condition)


@dataclass(frozen=True)
class Change:
    """How far a number may move from its baseline: a fraction of it (relative) or an amount in its units."""

    amount: float
    relative: bool

    def bound(self, base: float, direction: int) -> float:
        return base + direction * (abs(base) * self.amount if self.relative else self.amount)

    def describe(self, path: MetricPath) -> str:
        return f"{100 * self.amount:g}%" if self.relative else path.format(self.amount)


@dataclass(frozen=True)
class Regression:
    """A limit on how much worse than the baseline run a number may get."""

    path: MetricPath
    max_increase: Change | None = None
    max_decrease: Change | None = None
    name: str = ""
    line: int | None = None
    confidence: float = DEFAULT_CONFIDENCE  # a change beyond the limits must also be significant at this level

    @property
    def title(self) -> str:
        limits = [f"+{self.max_increase.describe(self.path)}" if self.max_increase else "",
                  f"-{self.max_decrease.describe(self.path)}" if self.max_decrease else ""]
        return self.name or f"{self.path} vs baseline ({' / '.join(x for x in limits if x)})"


Check = Gate | Regression


class Status(StrEnum):
    PASS = "pass"
    FAIL = "FAIL"
    SKIP = "skip"
    TOO_FEW = "too few"  # a percentile from too few values: neither passed nor failed


@dataclass(frozen=True)
class GateResult:
    name: str
    value: str  # formatted with its unit
    limit: str
    status: Status
    detail: str = ""  # why: "no data", "no baseline", the change against the baseline


@dataclass(frozen=True)
class Verdict:
    results: tuple[GateResult, ...]

    @property
    def failures(self) -> list[GateResult]:
        return [r for r in self.results if r.status is Status.FAIL]

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def table(self) -> str:
        header = ("verdict", "gate", "value", "limit", "")
        rows = [header] + [(r.status.value, r.name, r.value, r.limit, r.detail) for r in self.results]
        widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) + ("  " + row[-1] if row[-1] else "")
                 for row in rows]
        verdict = "PASS" if self.passed else f"FAIL ({len(self.failures)} of {len(self.results)} gates failed)"
        unjudged = sum(r.status is Status.TOO_FEW for r in self.results)
        if unjudged:
            verdict += f"; {unjudged} gate(s) not judged: too few values for their percentile"
        return "\n".join(lines + [verdict])

    def junit_xml(self, suite: str = "yapbench gates") -> str:
        root = ET.Element("testsuites")
        ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(self.results)),
                           failures=str(len(self.failures)), errors="0",
                           skipped=str(sum(r.status in (Status.SKIP, Status.TOO_FEW) for r in self.results)))
        for r in self.results:
            case = ET.SubElement(ts, "testcase", classname="yapbench.gates", name=r.name)
            message = f"value {r.value}, limit {r.limit}" + (f" ({r.detail})" if r.detail else "")
            if r.status is Status.FAIL:
                ET.SubElement(case, "failure", message=message, type="GateFailed").text = message
            elif r.status in (Status.SKIP, Status.TOO_FEW):
                ET.SubElement(case, "skipped", message=r.detail)
            else:
                ET.SubElement(case, "system-out").text = message
        ET.indent(root)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# path, confidence -> the interval of (run - baseline) at that confidence, or None when it cannot be computed
Significance = Callable[[MetricPath, float], "Interval | None"]


def evaluate(summary: dict, gates: Sequence[Check | str], baseline_summary: dict | None = None,
             significance: Significance | None = None) -> Verdict:
    """Apply gates (Gate, Regression, or condition strings such as "first_word.p95<=1200ms") to a summary.
    `significance` (uncertainty.significance_between) lets a regression fail only on a significant change."""
    results = []
    for g in gates:
        if isinstance(g, str):
            g = Gate(parse_condition(g))
        results.append(_gate(g, summary) if isinstance(g, Gate)
                       else _regression(g, summary, baseline_summary, significance))
    return Verdict(tuple(results))


def _gate(g: Gate, summary: dict) -> GateResult:
    r = g.condition.check(summary)
    path = g.condition.path
    limit = f"{g.condition.op} {path.format(g.condition.limit)}"
    too_few = path.too_few(summary)
    if too_few:
        return GateResult(g.title, path.format(r.value), limit, Status.TOO_FEW, too_few)
    return GateResult(g.title, path.format(r.value), limit, Status.PASS if r.passed else Status.FAIL,
                      "" if r.value is not None else "not observed")


def _regression(g: Regression, summary: dict, baseline: dict | None,
                significance: Significance | None = None) -> GateResult:
    value = g.path.value(summary)
    if baseline is None:
        return GateResult(g.title, g.path.format(value), "", Status.SKIP, "no baseline given")
    base = g.path.value(baseline)
    if base is None:
        return GateResult(g.title, g.path.format(value), "", Status.SKIP, "not observed in the baseline")
    hi = g.max_increase.bound(base, +1) if g.max_increase else None
    lo = g.max_decrease.bound(base, -1) if g.max_decrease else None
    limit = " and ".join(x for x in (f">= {g.path.format(lo)}" if lo is not None else "",
                                     f"<= {g.path.format(hi)}" if hi is not None else "") if x)
    limit += f" (baseline {g.path.format(base)})"
    if value is None:
        return GateResult(g.title, g.path.format(value), limit, Status.FAIL, "not observed")
    for which, s in (("this run", summary), ("the baseline", baseline)):
        too_few = g.path.too_few(s)
        if too_few:
            return GateResult(g.title, g.path.format(value), limit, Status.TOO_FEW, f"{which}: {too_few}")
    ok = (hi is None or value <= hi) and (lo is None or value >= lo)
    change = f"{100 * (value - base) / abs(base):+.1f}% vs baseline" if base else ""
    if ok:
        return GateResult(g.title, g.path.format(value), limit, Status.PASS, change)
    interval = significance(g.path, g.confidence) if significance else None
    if interval is None:
        return GateResult(g.title, g.path.format(value), limit, Status.FAIL,
                          ", ".join(x for x in (change, "significance not tested (needs both run directories; "
                                                "percentiles, means and rates only)") if x))
    bounds = f"[{_signed(g.path, interval.lo)}, {_signed(g.path, interval.hi)}]"
    ci = f"{100 * g.confidence:g}% CI of the difference {bounds}"
    significant = interval.lo > 0 if (hi is not None and value > hi) else interval.hi < 0
    if not significant:
        return GateResult(g.title, g.path.format(value), limit, Status.PASS,
                          ", ".join(x for x in (change, f"beyond the limit but not significant: {ci} includes 0") if x))
    return GateResult(g.title, g.path.format(value), limit, Status.FAIL, ", ".join(x for x in (change, ci) if x))


def _signed(path: MetricPath, v: float) -> str:
    return ("+" if v >= 0 else "-") + path.format(abs(v))


# --- the gates file ---------------------------------------------------------------------------------------------

def load_gates(path: str | Path) -> list[Check]:
    """Parse and check a gates file; any problem is a UserError naming the file and the line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"gates file {p}: cannot be read ({exc})") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"gates file {p}: invalid TOML: {exc}") from None
    for key in doc:
        if key not in ("gate", "regression"):
            raise UserError(f"gates file {p}{_at(_key_line(text, 1, key))}: unknown table or key {key!r} "
                            "(expected [[gate]] and [[regression]] entries)")
    if not doc:
        raise UserError(f"gates file {p}: no [[gate]] or [[regression]] entries")
    checks: list[Check] = []
    for table, allowed, make in (("gate", GATE_KEYS, _make_gate), ("regression", REGRESSION_KEYS, _make_regression)):
        entries = doc.get(table, [])
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise UserError(f"gates file {p}{_at(_key_line(text, 1, table))}: {table} must be written [[{table}]]")
        headers = _header_lines(text, table)
        for i, entry in enumerate(entries):
            line = headers[i] if len(headers) == len(entries) else None
            try:
                unknown = sorted(set(entry) - allowed)
                if unknown:
                    raise _EntryError(unknown[0], f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
                checks.extend(make(entry, line))
            except _EntryError as exc:
                key_line = _key_line(text, line, exc.key) if line and exc.key else None
                raise UserError(f"gates file {p}{_at(key_line or line)}: [[{table}]] #{i + 1}: {exc}") from None
    return checks


class _EntryError(Exception):
    """A problem with one key of one entry (the key finds the line)."""

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message)
        self.key = key


def _make_gate(entry: dict, line: int | None) -> list[Gate]:
    name = str(entry.get("name", ""))
    if "condition" in entry:
        if "metric" in entry or "max" in entry or "min" in entry:
            raise _EntryError("condition", "give either condition or metric with max/min, not both")
        return [Gate(_slo("condition", parse_condition, _text(entry, "condition")), name, line)]
    if "metric" not in entry:
        raise _EntryError(None, "needs condition = \"PATH OP VALUE\" or metric = \"PATH\" with max and/or min")
    if "max" not in entry and "min" not in entry:
        raise _EntryError("metric", "a metric gate needs max and/or min")
    path = _slo("metric", parse_path, _text(entry, "metric"), f"metric {entry['metric']!r}")
    bounds = [(key, op) for key, op in (("min", ">="), ("max", "<=")) if key in entry]
    gates = []
    for key, op in bounds:
        limit = _slo(key, parse_value, _number_or_text(entry, key), path.kind, f"{key} = {entry[key]!r}")
        title = f"{name} ({key})" if name and len(bounds) > 1 else name
        gates.append(Gate(Condition(f"{path} {op} {entry[key]}", path, op, limit), title, line))
    return gates


def _make_regression(entry: dict, line: int | None) -> list[Regression]:
    if "metric" not in entry:
        raise _EntryError(None, "needs metric = \"PATH\"")
    if "max_increase" not in entry and "max_decrease" not in entry:
        raise _EntryError("metric", "needs max_increase and/or max_decrease")
    path = _slo("metric", parse_path, _text(entry, "metric"), f"metric {entry['metric']!r}")
    return [Regression(path, _change(entry, "max_increase", path), _change(entry, "max_decrease", path),
                       str(entry.get("name", "")), line, _confidence(entry))]


def _confidence(entry: dict) -> float:
    if "confidence" not in entry:
        return DEFAULT_CONFIDENCE
    value = _slo("confidence", parse_value, _number_or_text(entry, "confidence"), Kind.FRACTION,
                 f"confidence = {entry['confidence']!r}")
    if not 0.5 <= value < 1.0:
        raise _EntryError("confidence", "confidence must be at least 50% and below 100% (e.g. \"95%\" or 0.95)")
    return value


def _change(entry: dict, key: str, path: MetricPath) -> Change | None:
    if key not in entry:
        return None
    raw = _number_or_text(entry, key)
    relative = isinstance(raw, str) and raw.strip().endswith("%")
    change = Change(_slo(key, parse_value, raw, Kind.FRACTION if relative else path.kind, f"{key} = {raw!r}"),
                    relative)
    if change.amount < 0:
        raise _EntryError(key, f"{key} must not be negative")
    return change


def _slo(key: str, parse: Callable[..., T], *args: object) -> T:
    """A condition-language parse whose error points at the entry's key."""
    try:
        return parse(*args)
    except SloError as exc:
        raise _EntryError(key, str(exc)) from None


def _text(entry: dict, key: str) -> str:
    if not isinstance(entry[key], str):
        raise _EntryError(key, f"{key} must be a string")
    return entry[key]


def _number_or_text(entry: dict, key: str) -> str | float:
    v = entry[key]
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise _EntryError(key, f"{key} must be a number or a string such as \"1200ms\" or \"1%\"")
    return v


def _header_lines(text: str, table: str) -> list[int]:
    pattern = re.compile(rf"^[ \t]*\[\[[ \t]*{table}[ \t]*\]\]", re.M)
    return [text.count("\n", 0, m.start()) + 1 for m in pattern.finditer(text)]


def _key_line(text: str, start: int | None, key: str) -> int | None:
    """The line of `key = ...` (or a [key] / [[key]] header) from line `start` to the next table header."""
    pattern = re.compile(rf"^[ \t]*(\[\[?[ \t]*)?{re.escape(key)}[ \t]*(=|\]\]?)")
    lines = text.splitlines()
    for n in range(start or 1, len(lines) + 1):
        if n > (start or 1) and start and lines[n - 1].lstrip().startswith("["):
            break
        if pattern.match(lines[n - 1]):
            return n
    return None


def _at(line: int | None) -> str:
    return f", line {line}" if line else ""


# --- summaries and the command ----------------------------------------------------------------------------------

def load_summary(path: str | Path) -> dict:
    """A run's summary: its summary.json when newer than its records, else built (and written) from the records.
    `path` may also be a summary.json file on its own (a baseline kept as a CI artifact)."""
    from .report import SUMMARY, summarize_run, write_summary

    p = Path(path)
    if p.is_file():
        return _read_json(p)
    if not p.is_dir():
        raise UserError(f"run directory {p}: no such directory")
    summary_path, sessions_path = p / SUMMARY, p / "sessions.jsonl"
    if summary_path.exists() and (not sessions_path.exists()
                                  or summary_path.stat().st_mtime >= sessions_path.stat().st_mtime):
        return _read_json(summary_path)
    summary = summarize_run(p)
    write_summary(p, summary)
    return summary


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable summary ({exc})") from None
    if not isinstance(data, dict) or "outcomes" not in data:
        raise UserError(f"{path}: not a yapbench summary.json")
    return data


def check_run(run_dir: str | Path, gates: str | Path | None = None, conditions: Sequence[str] = (),
              baseline: str | Path | None = None) -> Verdict:
    """The verdict of a gates file and/or conditions on a run directory (or a summary.json), against a baseline run
    for the [[regression]] entries. Unusable input (a broken gates file, no gates at all, an unreadable run) is a
    UserError."""
    checks: list[Check] = []
    if gates:
        checks += load_gates(gates)
    checks += [Gate(parse_condition(c)) for c in conditions]
    if not checks:
        raise UserError("no gates: give --gates FILE and/or --condition EXPR")
    summary = load_summary(run_dir)
    base = load_summary(baseline) if baseline else None
    significance = None
    if baseline and Path(run_dir).is_dir() and Path(baseline).is_dir():  # as `base`: a baseline was given
        from .uncertainty import significance_between

        significance = significance_between(run_dir, baseline)
    return evaluate(summary, checks, base, significance)


def publish(verdict: Verdict, run_dir: str | Path, junit: str | Path | None = None) -> int:
    """Print the verdict's table, write its JUnit XML (default: beside the run's summary); the exit code."""
    print(verdict.table())
    run_dir = Path(run_dir)
    junit = Path(junit) if junit else (run_dir / JUNIT if run_dir.is_dir() else run_dir.with_name(JUNIT))
    try:
        junit.write_text(verdict.junit_xml(), encoding="utf-8")
    except OSError as exc:
        print(f"yapbench gate: cannot write {junit}: {exc}", file=sys.stderr)
        return 2
    print(f"junit: {junit}")
    return verdict.exit_code
