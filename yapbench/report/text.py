"""The summary as a few plain-text lines, for terminals and CI logs (`yapbench report`, `yapbench run`)."""

from __future__ import annotations

from ..metricdefs import GENERATOR_LAG_LIMIT_MS, METRICS
from .openloop import traffic_rows

HEADLINE_METRICS = tuple(m.name for m in METRICS if m.headline)
NAME_WIDTH = max(14, *(len(m) + 2 for m in HEADLINE_METRICS))


def headline(summary: dict) -> str:
    outcomes = ", ".join(f"{o} {c}" for o, c in summary["outcomes"].items() if c) or "none"
    whole = summary.get("whole_run")
    lines = []
    if summary.get("phases") and whole:
        everything = ", ".join(f"{o} {c}" for o, c in whole["outcomes"].items()) or "none"
        lines.append(f"whole run: sessions {whole['sessions']} in {whole['duration_s']:.1f} s: {everything}")
        lines.append(f"steady state (from {summary['window']['settle_s']:g} s after the last user started; "
                     "ramp and drain in the report):")
    lines += [
        f"sessions {summary['sessions']} in {summary['duration_s']:.1f} s: {outcomes}",
        f"rejection rate {_pct(summary['rejection_rate'])}, error rate {_pct(summary['error_rate'])}, "
        f"WER {'n/a' if summary['wer'] is None else format(summary['wer'], '.4f')}",
        f"{'metric (ms)':<{NAME_WIDTH}}{'count':>10}{'p50':>10}{'p95':>10}{'p99':>10}{'max':>10}",
    ]
    lines[2:2] = [f"{name}: {value}" for name, value in traffic_rows(summary)] + _conversation_lines(summary)
    for m in HEADLINE_METRICS:
        s = summary.get(m) or {}
        if s.get("count"):
            lines.append(f"{m:<{NAME_WIDTH}}{s['count']:>10}"
                         + "".join(f"{s[k]:>10.1f}" for k in ("p50", "p95", "p99", "max")))
    if summary.get("generator_overloaded"):
        lines.append(f"WARNING: generator send lag p99 > {GENERATOR_LAG_LIMIT_MS:g} ms: "
                     "this run measured the generator, not the server")
    if summary.get("estimates"):
        lines.append(f"(estimates within 1 %: {', '.join(summary['estimates'])})")
    return "\n".join(lines)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}%"


def _conversation_lines(summary: dict) -> list[str]:
    """Conversations (--conversation): the turns and their end-of-turn rates (their latencies are rows below)."""
    if not summary.get("turns"):
        return []
    return [f"turns {summary['turns']}: false end of turn {_pct(summary['false_end_of_turn_rate'])}, end of turn "
            f"missed {_pct(summary['end_of_turn_missed_rate'])}, speech {_pct(summary['speech_share'])} of the time"]

