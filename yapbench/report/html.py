"""report.html: one static page, inline CSS, PNGs by relative path beside it (opens from disk, no network)."""

from __future__ import annotations

import html
import time
from importlib import resources
from string import Template
from typing import Sequence

from ..metricdefs import GENERATOR_LAG_LIMIT_MS
from .openloop import traffic_rows
from .schema import TARGETS, TIME_METRICS, number_at
from .section import Section

PERCENTILE_COLUMNS = ("count", "p50", "p90", "p95", "p99", "max", "mean")
TARGET_COLUMNS = (("sessions", "sessions"), ("ok", "outcomes.ok"), ("rejected", "outcomes.rejected"),
                  ("error rate", "error_rate"), ("first word p50", "first_word.p50"),
                  ("first word p95", "first_word.p95"), ("word lag p95", "word_lag.p95"), ("WER", "wer"))


def render(summary: dict, images: dict[str, str | None], notes: list[str], sections: Sequence[Section] = ()) -> str:
    run = summary["run"]
    title = f"yapbench report: {run.get('run_id', '')}".rstrip(": ")
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(summary["window"]["start"]))
    parts = []
    if summary.get("generator_overloaded"):
        lag = summary["send_lag"]["p99"]
        parts.append(f'<div class="warning">Generator send lag p99 is {lag:.1f} ms '
                     f"(&gt; {GENERATOR_LAG_LIMIT_MS:g} ms): this run measured the generator, not the server. "
                     "Use more generator processes or hosts, or fewer users per process.</div>")
    parts += [f'<div class="note">{_e(n)}</div>' for n in notes]
    parts += [_section_html(section) for section in sections]
    parts.append("<h2>What was run</h2>" + _table(None, _run_rows(summary, started)))
    if summary.get("phases"):
        parts.append("<h2>Phases</h2><p>The figures below are the steady state's: from "
                     f"{summary['window']['settle_s']:g} s after the last user started until the load stopped. "
                     "Ramp (users starting, then the settle time) and drain (sessions finishing after the stop) "
                     "are their own phases.</p>"
                     + _table(PHASE_COLUMNS, _phase_rows(summary)))
    traffic = traffic_rows(summary)
    if traffic:
        parts.append("<h2>Offered load, blocking and goodput</h2>" + _table(None, traffic))
    parts.append('<h2>Outcomes and key percentiles</h2><div class="grid">'
                 + _table(("outcome", "sessions", "share"), _outcome_rows(summary))
                 + _table(("metric (ms)", *PERCENTILE_COLUMNS), _percentile_rows(summary)) + "</div>")
    if TARGETS in summary:
        rows = [(t, *(_fmt(number_at(sub, path.split(".")), pct=path.endswith("_rate")) for _, path in TARGET_COLUMNS))
                for t, sub in summary[TARGETS].items()]
        parts.append("<h2>Per target</h2>" + _table(("target", *(c for c, _ in TARGET_COLUMNS)), rows))
    parts.append("<h2>Word error rate</h2>" + _wer_html(summary))
    for heading, key in (("Latency distributions", "latency_cdf"), ("Over time", "timeseries"),
                         ("GPU", "gpu"), ("Server step time", "server"), ("Load against latency", "load_latency"),
                         ("Outcomes", "outcomes"), ("WER per sample", "wer"),
                         ("Conversations: per-turn latency", "turn_cdf"), ("One conversation", "conversation")):
        if images.get(key):
            parts.append(f'<h2>{heading}</h2><img src="{_e(images[key])}" alt="{_e(heading)}">')
    template = Template(resources.files(__package__).joinpath("template.html").read_text(encoding="utf-8"))
    return template.substitute(title=_e(title), subtitle=_e(f"started {started}, built by yapbench report"),
                               body="\n".join(parts))


def _section_html(section: Section) -> str:
    out = (f"<h2>{_e(section.title)}</h2>" + "".join(f"<p><b>{_e(line)}</b></p>" for line in section.lines)
           + _table(section.header, [tuple(_fmt(v) for v in row) for row in section.rows]))
    if section.image:
        out += f'<img src="{_e(section.image)}" alt="{_e(section.title)}">'
    return out


PHASE_COLUMNS = ("phase", "from (s)", "to (s)", "sessions", "ok rate", "first word p95", "word lag p95",
                 "send lag p99", f"frames sent > {GENERATOR_LAG_LIMIT_MS:g} ms late")


def _phase_rows(summary: dict) -> list[tuple]:
    t0 = summary["whole_run"]["start"]
    return [(name, f"{p['start'] - t0:.1f}", f"{p['end'] - t0:.1f}", p["sessions"], _fmt(p["ok_rate"], pct=True),
             _fmt(p["first_word"].get("p95")), _fmt(p["word_lag"].get("p95")), _fmt(p["send_lag"].get("p99")),
             "" if p["late_share"] is None else f"{p['late_frames']:,} ({100 * p['late_share']:.1f}%)")
            for name, p in summary["phases"].items()]


def _run_rows(summary: dict, started: str) -> list[tuple]:
    run = summary["run"]
    samples = run.get("samples") or []
    return [
        ("target(s)", ", ".join(run.get("targets") or []) or "?"),
        ("samples", f"{len(samples)}: " + ", ".join(samples)),
        ("users", run.get("users", "?")),
        ("spawn rate", run.get("spawn_rate", "?")),
        ("speed", run.get("speed", "?")),
        ("shape", run.get("shape", "")),
        ("started", started),
        ("duration", f"{summary['duration_s']:.1f} s"),
        ("sessions", summary["sessions"]),
        ("command", " ".join(map(str, cmd)) if isinstance(cmd := run.get("command", ""), list) else cmd),
    ]


def _outcome_rows(summary: dict) -> list[tuple]:
    n = summary["sessions"] or 1
    rows = [(o, c, f"{100 * c / n:.1f}%") for o, c in summary["outcomes"].items() if c]
    rows += [(name, "", _fmt(summary[name], pct=True)) for name in ("ok_rate", "rejection_rate", "error_rate")]
    return rows


def _percentile_rows(summary: dict) -> list[tuple]:
    return [(m, *(_fmt(summary[m].get(c)) for c in PERCENTILE_COLUMNS)) for m in TIME_METRICS
            if summary.get(m, {}).get("count")]


def _wer_html(summary: dict) -> str:
    by_sample = summary["wer_by_sample"]
    if summary["wer"] is None:
        return "<p>No session could be scored (no ok session of a sample with a reference transcript).</p>"
    rows = [(name, s["sessions"], s["ref_words"], s["errors"], _fmt(s["wer"])) for name, s in by_sample.items()]
    return (f"<p>Overall WER <b>{summary['wer']:.4f}</b> (total errors / total reference words over ok sessions; "
            "lowercase, punctuation removed, see docs/report.md).</p>"
            + _table(("sample", "sessions", "reference words", "errors", "WER"), rows))


def _table(header: tuple | None, rows: list[tuple]) -> str:
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _fmt(v: object, pct: bool = False) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{100 * v:.2f}%" if pct else f"{v:,.4g}" if abs(v) < 1 else f"{v:,.1f}"
    return str(v)


def _e(v: object) -> str:
    return html.escape(str(v))
