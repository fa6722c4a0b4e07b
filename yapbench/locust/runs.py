"""This process's tests: one run directory each, in the order they ran (the STT tab lists them).

With --run-dir DIR the first test writes into DIR and the next ones into DIR-2, DIR-3, ...; without it each test
gets its own reports/<run-id>. Nothing is ever written into an earlier test's directory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ..runlog import default_run_dir


@dataclass
class RunEntry:
    """One test of this process, as the run list shows it."""

    number: int  # 1 for the process's first test
    dir: Path
    started_at: float
    ended_at: float | None = None
    exit_code: int | None = None  # the test's verdict (finish_run), once its report is built

    @property
    def run_id(self) -> str:
        return self.dir.name


class RunHistory:
    def __init__(self) -> None:
        self.entries: list[RunEntry] = []

    def next_dir(self, run_dir_option: str) -> Path:
        """The directory for the next test. The option may change between tests (the web UI's form); an explicit
        DIR is used as given the first time (as a one-test run always did), numbered after that."""
        used = {e.dir for e in self.entries}
        base = Path(run_dir_option) if run_dir_option else default_run_dir()
        if base not in used and (run_dir_option or not base.exists()):
            return base
        k = 2
        while (candidate := base.with_name(f"{base.name}-{k}")) in used or candidate.exists():
            k += 1
        return candidate

    def begin(self, run_dir_option: str) -> RunEntry:
        entry = RunEntry(number=len(self.entries) + 1, dir=self.next_dir(run_dir_option), started_at=time.time())
        self.entries.append(entry)
        return entry

    def find(self, number: int) -> RunEntry | None:
        return self.entries[number - 1] if 1 <= number <= len(self.entries) else None
