"""The report's PNGs (matplotlib, Agg, no pyplot state). Each function writes one file and returns its name,
or None when the run has nothing to draw; plotted series are downsampled so a million points cost no more
than a thousand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..metricdefs import METRICS, SEND_LAG, Source
from .bulk import sample_cdf
from .load import RunData, target_codes
from .timeseries import TimeSeries, active_at, each_gpu

CDF_POINTS = 2000
SCATTER_POINTS = 5000
LOAD_BANDS = 30
MIN_BAND_SESSIONS = 20
DPI = 90
OUTCOME_COLOURS = {"ok": "C2", "rejected": "C1", "cancelled": "C7"}  # everything else is an error: red


def _save(fig: Figure, out_dir: Path, name: str) -> str:
    fig.savefig(out_dir / name, dpi=DPI)
    return name


Curve = tuple[np.ndarray, np.ndarray]  # x, fraction <= x
Cdfs = dict[str, dict[str, tuple[Curve, int]]]  # metric -> label -> (CDF curve, number of values)


def latency_values(run: RunData) -> Cdfs:
    """metric -> label (target, or "all") -> (CDF curve, number of values) of served sessions."""
    served_mask = run.sessions["served"].to_numpy()
    served = run.sessions[served_mask]
    fleet = len(run.targets) > 1
    codes, word_codes, names = target_codes(run)  # integers: tens of millions of words compare cheaply
    out: Cdfs = {}
    for metric in METRICS:
        if not metric.plot or metric.source not in (Source.SESSION, Source.WORD):
            continue
        frame, tgt = (served, codes[served_mask]) if metric.source == Source.SESSION else (run.words, word_codes)
        values = frame[metric.field].to_numpy()
        known = ~np.isnan(values)  # one selection per group: ninety million words are not copied twice
        groups = {str(names[i]): values[(tgt == i) & known] for i in np.argsort(names.astype(str))} if fleet \
            else {"all": values if known.all() else values[known]}
        if any(v.size for v in groups.values()):
            out[metric.name] = {k: (sample_cdf(v, CDF_POINTS), v.size) for k, v in groups.items() if v.size}
    if SEND_LAG.plot and run.send_lag.size:
        out[SEND_LAG.name] = {"all (generator)": (run.send_lag.cdf(CDF_POINTS), run.send_lag.size)}
    return out


def latency_cdfs(values: Cdfs, out_dir: Path,
                 name: str = "latency_cdf.png") -> str | None:
    if not values:
        return None
    cols = 3
    rows = -(-len(values) // cols)
    fig = Figure(figsize=(13, 3.4 * rows), layout="constrained")
    for ax, (metric, groups) in zip(fig.subplots(rows, cols, squeeze=False).flat, values.items()):
        hi = 0.0
        for label, ((x, y), n) in groups.items():
            ax.plot(x, y, label=f"{label} (n={n:,})", drawstyle="steps-post")
            hi = max(hi, float(x[min(int(np.searchsorted(y, 0.999)), x.size - 1)]))
        # The x range stops at p99.9: one stray second-long value would otherwise flatten every curve.
        ax.set_xlim(left=min(0.0, ax.get_xlim()[0]), right=hi * 1.05 if hi > 0 else None)
        ax.set_title(f"{metric} (ms)")
        ax.set_ylabel("fraction ≤ x")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in fig.axes[len(values):]:
        ax.set_visible(False)
    return _save(fig, out_dir, name)


PHASE_COLOURS = {"ramp": "C1", "drain": "C7"}  # shaded on every panel; the steady state is left clear


def timeseries(ts: TimeSeries, out_dir: Path, phases: dict[str, dict] | None = None) -> str:
    panels: list[tuple[str, pd.DataFrame | pd.Series]] = [
        ("active streams", ts.active),
        ("first word (ms) by session start", ts.first_word),
        ("word lag (ms) by arrival", ts.word_lag),
        ("backlog max (ms) by session end", ts.backlog),
        ("rejections / s", ts.rejections.rename("rejected")),
        ("generator send lag (ms)", ts.send_lag),
    ]
    fig = Figure(figsize=(13, 2.3 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, sharex=True)
    for ax, (title, data) in zip(axes, panels):
        frame = data.to_frame() if isinstance(data, pd.Series) else data
        for col in frame.columns:
            series = frame[col].dropna()  # polled series (server slots) have gaps between polls
            ax.plot(series.index, series.to_numpy(), label=col, drawstyle="steps-post", linewidth=1)
        if frame.empty:
            ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="gray")
        else:
            ax.legend(fontsize=7, loc="upper left")
        ax.set_title(title, fontsize=10, loc="left")
        ax.grid(alpha=0.3)
        for name, p in (phases or {}).items():
            if name in PHASE_COLOURS:
                ax.axvspan(p["start"] - ts.start, p["end"] - ts.start, color=PHASE_COLOURS[name], alpha=0.08, lw=0)
    shaded = [n for n in PHASE_COLOURS if n in (phases or {})]
    phase_note = f"; shaded: {', '.join(shaded)} (the headline figures are the steady state's)" if shaded else ""
    axes[-1].set_xlabel(f"seconds since start (bins of {ts.bin_s:g} s){phase_note}")
    return _save(fig, out_dir, "timeseries.png")


def gpu(ts: TimeSeries, out_dir: Path) -> str | None:
    if ts.gpu is None:
        return None
    fields = [("util_pct", "GPU utilisation (%)"), ("mem_used_mib", "GPU memory used (MiB)"),
              ("power_w", "GPU power (W)")]
    fig = Figure(figsize=(13, 2.3 * len(fields)), layout="constrained")
    axes = fig.subplots(len(fields), 1, sharex=True)
    for ax, (col, title) in zip(axes, fields):
        for label, g in each_gpu(ts.gpu):
            ax.plot(g["t"], g[col], label=label, linewidth=1)
        ax.set_title(title, fontsize=10, loc="left")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    axes[-1].set_xlabel("seconds since start")
    return _save(fig, out_dir, "gpu.png")


def server(ts: TimeSeries, out_dir: Path) -> str | None:
    """The servers' own model step time beside the client's latency, open channels and the GPUs, on one time axis:
    a step nearing the 80 ms frame is where latency starts to climb."""
    if ts.server is None:
        return None
    from ..servermetrics import FRAME_S

    panels = ["step", "latency", "channels"] + (["gpu"] if ts.gpu is not None else [])
    fig = Figure(figsize=(13, 2.4 * len(panels)), layout="constrained")
    axes = dict(zip(panels, fig.subplots(len(panels), 1, sharex=True)))
    for target, g in ts.server.groupby("target"):
        label = target if ts.server["target"].nunique() > 1 else "server"
        for col, style in (("step_p50_ms", "-"), ("step_p99_ms", "--")):
            axes["step"].plot(g["t"], g[col], style, linewidth=1, label=f"{label} {col[5:8]}")
        axes["channels"].plot(g["t"], g["open_channels"], linewidth=1, drawstyle="steps-post",
                              label=f"{label} open channels")
    axes["step"].axhline(1000 * FRAME_S, color="C3", linewidth=0.8, linestyle=":", label="80 ms frame")
    axes["step"].set_ylim(bottom=0)
    axes["step"].set_title("model step time (ms), server histogram per scrape", fontsize=10, loc="left")
    for col in ts.word_lag.columns:
        axes["latency"].plot(ts.word_lag.index, ts.word_lag[col], linewidth=1, label=f"word lag {col}")
    axes["latency"].set_title("client word lag (ms)", fontsize=10, loc="left")
    axes["channels"].plot(ts.active.index, ts.active["active"], linewidth=1, drawstyle="steps-post", color="k",
                          alpha=0.5, label="client active streams")
    axes["channels"].set_title("streams", fontsize=10, loc="left")
    if ts.gpu is not None:
        for label, g in each_gpu(ts.gpu):
            axes["gpu"].plot(g["t"], g["util_pct"], linewidth=1, label=label)
        axes["gpu"].set_title("GPU utilisation (%)", fontsize=10, loc="left")
    for ax in axes.values():
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="upper left")
    axes[panels[-1]].set_xlabel("seconds since start")
    return _save(fig, out_dir, "server.png")


def load_vs_latency(run: RunData, out_dir: Path) -> str | None:
    """First-word latency of each session against the number of streams open when it started."""
    served = run.sessions[run.sessions["served"] & run.sessions["first_word_ms"].notna()]
    if served.empty:
        return None
    load = active_at(run.sessions[run.sessions["served"]], served["started_at"].to_numpy())
    latency = served["first_word_ms"].to_numpy()
    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.subplots()
    pick = np.random.default_rng(0).permutation(load.size)[:SCATTER_POINTS]
    ax.scatter(load[pick], latency[pick], s=4, alpha=0.3, label=f"sessions ({pick.size:,} of {load.size:,})")
    # Percentiles per band of load; bands with few sessions (the ramp) would only draw noise.
    edges = np.linspace(load.min(), load.max() + 1, LOAD_BANDS + 1)
    band = np.digitize(load, edges) - 1
    grouped = pd.Series(latency).groupby(band)
    by_load = grouped.quantile([0.5, 0.95]).unstack()[grouped.size() >= MIN_BAND_SESSIONS]
    centers = (edges[:-1] + edges[1:]) / 2
    ax.plot(centers[by_load.index], by_load[0.5], "o-", color="C1", label="p50 per load band")
    ax.plot(centers[by_load.index], by_load[0.95], "o-", color="C3", label="p95 per load band")
    ax.set_xlabel("active streams at session start")
    ax.set_ylabel("first word (ms)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out_dir, "load_latency.png")


def outcomes(counts: dict[str, int], out_dir: Path) -> str:
    fig = Figure(figsize=(9, 3.5), layout="constrained")
    ax = fig.subplots()
    names = list(counts)
    bars = ax.bar(names, [counts[n] for n in names],
                  color=[OUTCOME_COLOURS.get(n, "C3") for n in names])
    ax.bar_label(bars, fontsize=8)
    ax.set_ylabel("sessions")
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    return _save(fig, out_dir, "outcomes.png")


def wer_by_sample(by_sample: dict[str, dict], out_dir: Path) -> str | None:
    if not by_sample:
        return None
    names = sorted(by_sample)
    fig = Figure(figsize=(9, max(2.5, 0.35 * len(names) + 1)), layout="constrained")
    ax = fig.subplots()
    bars = ax.barh(names, [by_sample[n]["wer"] or 0.0 for n in names])
    ax.bar_label(bars, labels=[f"{by_sample[n]['wer']:.3f}" for n in names], fontsize=8)
    ax.set_xlabel("WER (corpus level per sample)")
    ax.tick_params(axis="y", labelsize=8)
    ax.invert_yaxis()
    return _save(fig, out_dir, "wer.png")
