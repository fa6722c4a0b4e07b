"""`yapbench compare RUN_A RUN_B [RUN_C ...] --out DIR`: one page that overlays the runs' latency distributions and
time series and tables every headline number, each run against the first, with the difference and its bootstrap
confidence interval (yapbench.uncertainty); significant differences are marked.

Every number is recomputed from each run's raw records with this version's summary code, so run directories
written by older yapbench versions compare too: what an older run did not record shows as "–".
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .metricdefs import SESSION_METRICS, WORD_METRICS  # noqa: E402
from .slo import Kind, MetricPath, parse_path  # noqa: E402
from .report.load import RunData, load_run  # noqa: E402
from .report.html import _e, _table  # noqa: E402  (the report's own escaping and tables)
from .report.bulk import sample_cdf  # noqa: E402
from .report.plots import CDF_POINTS, DPI  # noqa: E402
from .report.summary import summarize_data  # noqa: E402
from .report.timeseries import build as build_timeseries  # noqa: E402
from .uncertainty import Interval, difference, replicates, send_lag_values  # noqa: E402

COMPARE_HTML = "compare.html"
CONFIDENCE = 0.95
HEADLINE = ("sessions", "ok_rate", "rejection_rate", "error_rate", "first_word.p50", "first_word.p95",
            "first_word.p99", "word_lag.p50", "word_lag.p95", "word_lag.p99", "finalize.p50", "finalize.p95",
            "connect.p95", "ready.p95", "backlog_max.p95", "send_lag.p99", "wer", "throughput.ok_sessions_per_s",
            "throughput.audio_s_per_s")
HIGHER_IS_BETTER = frozenset({"ok_rate", "throughput.ok_sessions_per_s", "throughput.audio_s_per_s"})
NEUTRAL = frozenset({"sessions"})
CDF_METRICS = ("first_word", "word_lag", "finalize", "connect", "backlog_max", "send_lag")


@dataclass
class Compared:
    label: str
    run: RunData
    summary: dict


@dataclass(frozen=True)
class Cell:
    value: float | None
    diff: float | None = None  # against the first run
    interval: Interval | None = None
    note: str = ""  # why there is no interval


def compare(run_dirs: list[Path], out: Path, confidence: float = CONFIDENCE) -> Path:
    """Write out/compare.html and its PNGs; return the page's path."""
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for i, d in enumerate(run_dirs):
        run = load_run(d)
        runs.append(Compared(f"{chr(65 + i) if i < 26 else i}: {run.meta.get('run_id') or Path(d).name}", run,
                             summarize_data(run)))
    rows = {path: cells(runs, parse_path(path), confidence) for path in HEADLINE}
    images = [cdfs(runs, out), timeseries(runs, out)]
    page = render(runs, rows, [i for i in images if i], confidence)
    target = out / COMPARE_HTML
    target.write_text(page, encoding="utf-8")
    return target


def cells(runs: list[Compared], path: MetricPath, confidence: float) -> list[Cell]:
    base_value = path.value(runs[0].summary)
    base_reps = replicates(runs[0].run, path, 0)
    out = [Cell(base_value, note=path.too_few(runs[0].summary) or "")]
    for i, r in enumerate(runs[1:], start=1):
        value = path.value(r.summary)
        diff = None if value is None or base_value is None else value - base_value
        too_few = path.too_few(r.summary) or path.too_few(runs[0].summary)
        interval = None if too_few else difference(base_reps, replicates(r.run, path, i), confidence)
        note = too_few or ("" if interval is not None or diff is None else "no interval for this number")
        out.append(Cell(value, diff, interval, note))
    return out


# --- plots -----------------------------------------------------------------------------------------------------

def _values(run: RunData, metric: str) -> np.ndarray:
    served = run.sessions["served"].to_numpy(dtype=bool)
    if metric in SESSION_METRICS:
        v = run.sessions[served][SESSION_METRICS[metric]].to_numpy(dtype=np.float64)
    elif metric in WORD_METRICS:  # words are of served sessions only (report.load)
        v = run.words[WORD_METRICS[metric]].to_numpy(dtype=np.float64)
    else:
        v = send_lag_values(run)
    return v[~np.isnan(v)]


def cdfs(runs: list[Compared], out: Path) -> str | None:
    metrics = [m for m in CDF_METRICS if any(_values(r.run, m).size for r in runs)]
    if not metrics:
        return None
    cols = 3
    rows = -(-len(metrics) // cols)
    fig = Figure(figsize=(13, 3.4 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).flat
    for ax, metric in zip(axes, metrics):
        hi = 0.0
        for r in runs:
            v = _values(r.run, metric)
            if v.size:
                x, y = sample_cdf(v, CDF_POINTS)
                ax.plot(x, y, drawstyle="steps-post", label=f"{r.label.split(':')[0]} (n={v.size:,})")
                hi = max(hi, float(np.percentile(v, 99.9)))
        ax.set_xlim(left=0, right=hi * 1.05 if hi > 0 else None)
        ax.set_title(f"{metric} (ms)")
        ax.set_ylabel("fraction ≤ x")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(fig.axes)[len(metrics):]:
        ax.set_visible(False)
    fig.savefig(out / "compare_cdf.png", dpi=DPI)
    return "compare_cdf.png"


def timeseries(runs: list[Compared], out: Path) -> str:
    series = [build_timeseries(r.run) for r in runs]
    panels = (("active streams", lambda ts: ts.active["active"]),
              ("first word p95 (ms) by session start", lambda ts: ts.first_word.get("p95")),
              ("word lag p95 (ms) by arrival", lambda ts: ts.word_lag.get("p95")),
              ("rejections / s", lambda ts: ts.rejections),
              ("generator send lag p99 (ms)", lambda ts: ts.send_lag.get("p99")))
    fig = Figure(figsize=(13, 2.3 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True)
    for ax, (title, pick) in zip(axes, panels):
        for r, ts in zip(runs, series):
            s = pick(ts)
            if s is not None and len(s.dropna()):
                s = s.dropna()
                ax.plot(s.index, s.to_numpy(), linewidth=1, drawstyle="steps-post", label=r.label.split(":")[0])
        ax.set_title(title, fontsize=10, loc="left")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left")
    axes[-1].set_xlabel("seconds since each run's start")
    fig.savefig(out / "compare_timeseries.png", dpi=DPI)
    return "compare_timeseries.png"


# --- the page ---------------------------------------------------------------------------------------------------

def render(runs: list[Compared], rows: dict[str, list[Cell]], images: list[str], confidence: float) -> str:
    pct = f"{100 * confidence:g}%"
    about = _table(("run", "directory", "yapbench", "targets", "users", "sessions", "duration"),
                   [(r.label, str(r.run.dir), r.run.meta.get("yapbench_version", "?"),
                     ", ".join(r.summary["run"].get("targets") or []), r.run.meta.get("users", "?"),
                     r.summary["sessions"], f"{r.summary['duration_s']:.0f} s") for r in runs])
    header = ["metric", runs[0].label.split(":")[0]]
    for r in runs[1:]:
        tag = r.label.split(":")[0]
        header += [tag, f"{tag} − A", f"{pct} CI of {tag} − A"]
    body = []
    for path_text, row in rows.items():
        path = parse_path(path_text)
        cells_html = [_e(path_text), _e(path.format(row[0].value)) + _small(row[0].note)]
        for c in row[1:]:
            mark = _verdict(path_text, c)
            cells_html += [_e(path.format(c.value)),
                           f'<span class="{mark}">{_e(_signed(path, c.diff))}{" ✱" if mark else ""}</span>'
                           + _small(_relative(c, row[0].value)),
                           _e(f"[{_signed(path, c.interval.lo)}, {_signed(path, c.interval.hi)}]") if c.interval
                           else _small(c.note or "–")]
        body.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells_html) + "</tr>")
    table = ("<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" + "".join(body) + "</table>")
    legend = (f"<p>Each run against A. ✱ marks a difference whose {pct} bootstrap confidence interval excludes zero "
              "(green: better, red: worse). Intervals come from each run's raw records (docs/report.md); counts, "
              "maxima and throughput have none. A percentile needs 5 values beyond it (p99: 500) to be compared.</p>")
    parts = ["<h2>Runs</h2>" + about, "<h2>Headline numbers</h2>" + legend + table]
    parts += [f'<h2>{_e(t)}</h2><img src="{_e(i)}" alt="{_e(t)}">' for t, i in
              zip(("Latency distributions", "Over time"), images)]
    notes = [f"{r.label}: {n}" for r in runs for n in r.summary.get("notes", [])]
    parts += [f'<div class="note">{_e(n)}</div>' for n in notes]
    template = Template(resources.files("yapbench.report").joinpath("template.html").read_text(encoding="utf-8"))
    style = "<style>.better{color:#127a2a;font-weight:bold}.worse{color:#b3261e;font-weight:bold}</style>"
    return template.substitute(title=_e("yapbench compare: " + " vs ".join(r.label for r in runs)),
                               subtitle=_e(f"{len(runs)} runs, built by yapbench compare"),
                               body=style + "\n".join(parts))


def _verdict(path_text: str, c: Cell) -> str:
    if c.interval is None or not c.interval.significant or path_text in NEUTRAL or c.diff is None:
        return ""
    better = (c.diff > 0) == (path_text in HIGHER_IS_BETTER)
    return "better" if better else "worse"


def _signed(path: MetricPath, v: float | None) -> str:
    if v is None:
        return "–"
    if path.kind is Kind.FRACTION:
        return f"{100 * v:+.3g} pp"
    return ("+" if v >= 0 else "-") + path.format(abs(v))


def _relative(c: Cell, base: float | None) -> str:
    return f"{100 * c.diff / abs(base):+.1f}%" if c.diff is not None and base else ""


def _small(text: str) -> str:
    return f"<br><small>{_e(text)}</small>" if text else ""
