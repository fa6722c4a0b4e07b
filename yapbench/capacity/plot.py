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
        ax.set_xlabel("concurrent real-time streams")
        ax.set_ylabel(key)
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("yapbench capacity: green holds every SLO, red breaks one (or rejections / generator limit)")
    fig.tight_layout()
    out = Path(run_dir) / CAPACITY_PNG
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
