"""The end-of-run recap: one row per host (like Ansible's PLAY RECAP), failure details, and a JSON form."""

from __future__ import annotations

import json
from typing import Any, Sequence

from rich.console import Console
from rich.table import Table

from .runner import HostResult, Status

STYLE = {Status.OK: "green", Status.CHANGED: "yellow", Status.WOULD_CHANGE: "cyan", Status.SKIPPED: "dim",
         Status.FAILED: "bold red"}


def to_json(command: str, results: Sequence[HostResult]) -> dict[str, Any]:
    return {"command": command, "ok": all(r.ok for r in results), "hosts": [r.to_json() for r in results]}


def write_json(command: str, results: Sequence[HostResult], path: str) -> None:
    text = json.dumps(to_json(command, results), indent=2)
    if path == "-":
        print(text)
    else:
        with open(path, "w") as f:
            f.write(text + "\n")


def table(command: str, results: Sequence[HostResult]) -> Table:
    """Counts per host, like Ansible's PLAY RECAP; the per-step lines above it say what each step did."""
    t = Table(title=f"yapbench provision {command}", title_justify="left")
    t.add_column("host", no_wrap=True)
    for status in Status:
        t.add_column(str(status).split()[0], justify="right", style=STYLE[status])
    t.add_column("time", justify="right")
    t.add_column("result")
    for r in results:
        counts = [sum(s.status is status for s in r.steps) for status in Status]
        if r.ok:
            last = f"{len(r.targets)} Ready" if r.targets else "ok"
        else:
            last = f"[red]{next(s.step for s in r.steps if s.status is Status.FAILED)} failed[/]"
        t.add_row(r.host, *[str(c) if c else "" for c in counts], f"{r.elapsed_s:.1f}s", last)
    return t


def _step_lines(r: HostResult) -> list[str]:
    lines, blocked = [], [s for s in r.steps if s.message.startswith("after failed ")]
    for s in r.steps:
        if s in blocked:
            continue
        lines.append(f"  [{STYLE[s.status]}]{s.status:>12}[/]  {s.step:<12} {s.message}")
    if blocked:
        span = blocked[0].step if len(blocked) == 1 else f"{blocked[0].step}..{blocked[-1].step}"
        lines.append(f"  [dim]{'skipped':>12}[/]  {span} ({blocked[0].message})")
    return lines


def print_recap(command: str, results: Sequence[HostResult], console: Console | None = None) -> None:
    console = console or Console()
    for r in results:  # what each step did or would do, before the summary table
        console.print(f"[bold]{r.host}[/]")
        for line in _step_lines(r):
            console.print(line, highlight=False)
        for entry in r.info.get("instances", []):
            for line in entry.get("log_tail", []):
                console.print(f"      {entry['session']} log | {line}", highlight=False, markup=False)
        for gpu in r.info.get("gpus", []):
            console.print(f"      gpu | {gpu}", highlight=False, markup=False)
    console.print(table(command, results))
    for url in (u for r in results for u in r.targets):
        console.print(f"target {url}", highlight=False)
    for r in results:
        if not r.ok and r.error:
            console.print(f"[bold red]{r.host}[/]:", highlight=False)
            console.print(r.error, markup=False, highlight=False)
