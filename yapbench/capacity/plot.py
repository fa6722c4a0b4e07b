"""capacity.png: concurrency against each SLO metric, the limit drawn, the answer marked."""

from __future__ import annotations

from pathlib import Path

CAPACITY_PNG = "capacity.png"


def plot_capacity(answer: dict, run_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..slo import parse_condition

    levels = answer["levels"]
    conditions = [parse_condition(s) for s in answer["slos"]]
    n = max(1, len(conditions))
    fig, axes = plt.subplots(n, 1, figsize=(8, 3.2 * n), squeeze=False)
    users = [lv["users"] for lv in levels]
    for ax, cond in zip(axes[:, 0], conditions):
        key = str(cond.path)
        values = [lv["values"].get(key) for lv in levels]
        ok = [lv["passed"] for lv in levels]
        pts = [(u, v, p) for u, v, p in zip(users, values, ok) if v is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color="0.5", zorder=1)
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], c=["tab:green" if p[2] else "tab:red" for p in pts],
                       zorder=2)
        ax.axhline(cond.limit, color="tab:red", linestyle="--", label=f"limit {cond.path.format(cond.limit)}")
        if answer["capacity"] is not None:
            ax.axvline(answer["capacity"], color="tab:green", linestyle=":", label=f"capacity {answer['capacity']}")
        ax.set_xlabel(f"concurrent conversations ({answer['conversation']})" if answer.get("conversation")
                      else "concurrent real-time streams")
        ax.set_ylabel(key)
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("yapbench capacity: green holds every SLO, red breaks one (or rejections / generator limit)")
    fig.tight_layout()
    out = Path(run_dir) / CAPACITY_PNG
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_open_capacity(answer: dict, run_dir: Path) -> Path:
    """Open model: measured blocking with the Erlang B curve, and goodput, against offered load (Erlangs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..arrivals import erlang_b
    from ..slo import parse_condition

    levels = [lv for lv in answer["levels"] if lv["traffic"].get("offered_erlangs") is not None]
    limits = {str(c.path): c for c in map(parse_condition, answer["slos"])}
    fig, axes = plt.subplots(2, 1, figsize=(8, 7), sharex=True)
    for ax, key in zip(axes, ("blocking", "goodput")):
        pts = [(lv["traffic"]["offered_erlangs"], lv["traffic"].get(key), lv["passed"]) for lv in levels]
        pts = [p for p in pts if p[1] is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color="0.5", zorder=1)
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], zorder=2,
                       c=["tab:green" if p[2] else "tab:red" for p in pts], label=f"measured {key}")
        if key in limits:
            ax.axhline(limits[key].limit, color="tab:red", linestyle="--", label=f"target {limits[key]}")
        if answer.get("capacity_erlangs") is not None:
            ax.axvline(answer["capacity_erlangs"], color="tab:green", linestyle=":",
                       label=f"capacity {answer['capacity_rate']:g}/s = {answer['capacity_erlangs']:.3g} Erlangs")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    slots = max((lv["traffic"].get("slots") or 0 for lv in levels), default=0)
    if slots and levels:
        top = max(lv["traffic"]["offered_erlangs"] for lv in levels) * 1.1
        a = np.linspace(0, top, 200)
        axes[0].plot(a, [erlang_b(slots, x) for x in a], color="tab:blue", label=f"Erlang B, {slots} slots")
    for ax in axes:
        ax.legend(loc="upper left", fontsize=8)
    axes[1].set_xlabel("offered load (Erlangs = arrival rate x mean holding time)")
    fig.suptitle("yapbench capacity (open model): green holds every target, red breaks one")
    fig.tight_layout()
    out = Path(run_dir) / CAPACITY_PNG
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
