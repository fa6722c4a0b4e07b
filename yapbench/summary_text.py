"""Human-readable lines for one session (client, warmup)."""

from __future__ import annotations

from .metricdefs import Source, of
from .metrics import SessionResult, summarize


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} ms"


def session_summary_lines(r: SessionResult) -> list[str]:
    lines = [f"outcome        {r.outcome}" + (f"  ({r.error})" if r.error else "")]
    for metric in of(Source.SESSION):
        lines.append(f"{metric.label:<15}{_ms(getattr(r, metric.field))}")
    lag = summarize([w.lag_ms for w in r.words])
    if lag:
        lines.append(f"{'word lag':<15}p50 {lag['p50']:.1f} ms  p95 {lag['p95']:.1f} ms  max {lag['max']:.1f} ms"
                     f"  ({len(r.words)} words)")
    send = summarize(r.send_lag_ms)
    if send:
        lines.append(f"{'send lag':<15}p50 {send['p50']:.2f} ms  p99 {send['p99']:.2f} ms  ({r.frames_sent} frames)")
    return lines
