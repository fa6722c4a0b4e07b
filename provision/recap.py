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
    step_ids: list[str] = []
    for r in results:
        step_ids += [s.step for s in r.steps if s.step not in step_ids]
    t = Table(title=f"yapbench provision {command}", title_justify="left")
    t.add_column("host", no_wrap=True)
    for sid in step_ids:
        t.add_column(sid)
    t.add_column("time", justify="right")
    t.add_column("result / first error")
    for r in results:
        by_id = {s.step: s for s in r.steps}
        cells = [f"[{STYLE[by_id[sid].status]}]{by_id[sid].status}[/]" if sid in by_id else "" for sid in step_ids]
        if r.ok:
            last = " ".join(r.targets) or next((s.message for s in reversed(r.steps) if s.message), "")
        else:
            last = f"[red]{r.error.splitlines()[0] if r.error else 'failed'}[/]"
        t.add_row(r.host, *cells, f"{r.elapsed_s:.1f}s", last)
    return t


def print_recap(command: str, results: Sequence[HostResult], console: Console | None = None) -> None:
    console = console or Console()
    for r in results:  # what each step did or would do, before the summary table
        console.print(f"[bold]{r.host}[/]")
        for s in r.steps:
            console.print(f"  [{STYLE[s.status]}]{s.status:>12}[/]  {s.step:<12} {s.message}", highlight=False)
        for entry in r.info.get("instances", []):
            for line in entry.get("log_tail", []):
                console.print(f"      {entry['session']} log | {line}", highlight=False, markup=False)
        for gpu in r.info.get("gpus", []):
            console.print(f"      gpu | {gpu}", highlight=False, markup=False)
    console.print(table(command, results))
    for r in results:
        if not r.ok and r.error:
            console.print(f"[bold red]{r.host}[/]:", highlight=False)
            console.print(r.error, markup=False, highlight=False)
