"""Polling the servers during a load: one greenlet per poller reads every target once a second and appends one CSV
row per answer to the run directory.

`TargetPoller` is the loop and the file; a subclass says what to read from a target and which columns it gives.
`SlotPoller` reads /api/modules_info: slot usage over time (server.csv), and free slots per target. The real
server exposes `used_slots` / `total_slots` for its BatchedAsr module (docs/protocol.md §1); they show capacity from the
server's side, and let a fleet load send each new stream to the least-loaded target. The Prometheus scraper
(yapbench.servermetrics) is the other subclass.

Each round reads every target concurrently, waits one interval at most, and stamps the rows with the round's time.
A target that does not answer in time gets no row for that round (missing data, not zero: the report leaves a
gap); its last reason is kept in `failures` so the caller can say why a file stayed empty. The file is created with
its first row: no answer at all leaves no file.
"""

from __future__ import annotations

import csv
import json
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TextIO
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import gevent

from .runlog import SERVER as SERVER_CSV, SERVER_COLUMNS as COLUMNS  # the file's format is runlog's


def http_url(ws_url: str, path: str) -> str:
    """The plain-HTTP URL of `path` on the server of a ws:// target (the real server serves both on one port)."""
    parts = urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return f"{scheme}://{parts.netloc}{path}"


def modules_info_url(ws_url: str) -> str:
    return http_url(ws_url, "/api/modules_info")


def read_slots(ws_url: str, timeout_s: float = 2.0) -> tuple[int, int] | None:
    """(used, total) for the target's first batched_asr module, or None when it cannot be read."""
    try:
        with urllib.request.urlopen(modules_info_url(ws_url), timeout=timeout_s) as resp:
            modules = json.loads(resp.read())
        for m in modules:
            if m.get("type") == "batched_asr":
                return int(m["used_slots"]), int(m["total_slots"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None


class TargetPoller:
    """A greenlet that calls `read(target)` for every target each `interval_s` and appends `(t, target, *row)` to
    RUN_DIR/`filename` for every row it gets; without a run directory it only reads (for routing)."""

    filename: ClassVar[str]
    columns: ClassVar[tuple[str, ...]]  # the file's header, starting with t and target

    def __init__(self, targets: list[str], run_dir: Path | None, interval_s: float = 1.0) -> None:
        self.targets = targets
        self.interval_s = interval_s
        self.rows = 0
        self.failures: dict[str, str] = {}  # target -> why its last read gave nothing
        self.answered: set[str] = set()  # targets that gave at least one row
        self.generation = 0  # bumps after every poll round, so readers know the values are fresh
        self._path = Path(run_dir) / self.filename if run_dir else None
        self._file: TextIO | None = None
        self._greenlet: gevent.Greenlet | None = None

    def read(self, target: str) -> tuple | None:
        """One row for the target (the columns after t and target), or None (and a reason in `failures`)."""
        raise NotImplementedError

    def start(self) -> None:
        import gevent  # here, not at import: the report reads this module's file names without the load's runtime

        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=True, timeout=5)
            self._greenlet = None

    def silent(self) -> dict[str, str]:
        """Targets that never gave a row -> the last reason."""
        return {t: self.failures.get(t, "not polled yet") for t in self.targets if t not in self.answered}

    def _write(self, t: float, target: str, row: tuple) -> None:
        if self._path is None:
            return
        if self._file is None:
            new = not self._path.exists() or self._path.stat().st_size == 0
            self._file = open(self._path, "a", newline="", encoding="utf-8")
            if new:
                self._file.write(",".join(self.columns) + "\n")
        csv.writer(self._file, lineterminator="\n").writerow((round(t, 3), target, *("" if v is None else v
                                                                                     for v in row)))
        self.rows += 1

    def _run(self) -> None:
        import gevent

        try:
            next_t = time.monotonic()
            while True:
                # Every target at once, until the next round is due, and the round's rows share its time: a target
                # that hangs must not delay the others' rows into the next second, where a per-second sum misses them.
                # A fixed cadence, not sleep(interval) after the reads: rounds stay one interval apart; a round that
                # overran (the file, the hub) restarts the cadence instead of bursting to catch up.
                t = time.time()
                next_t += self.interval_s
                reads = [gevent.spawn(self.read, target) for target in self.targets]
                gevent.joinall(reads, timeout=max(0.0, next_t - time.monotonic()))
                for target, read in zip(self.targets, reads):
                    if not read.ready():
                        read.kill(block=False)
                        self.failures[target] = f"no answer within the {self.interval_s:g} s poll interval"
                    elif read.value is not None:
                        self.failures.pop(target, None)
                        self.answered.add(target)
                        self._write(t, target, read.value)
                    elif read.exception is not None:
                        self.failures[target] = repr(read.exception)
                self.generation += 1
                if self._file is not None:
                    self._file.flush()
                if next_t < time.monotonic():
                    next_t = time.monotonic()
                gevent.sleep(next_t - time.monotonic())
        finally:
            if self._file is not None:
                self._file.close()
                self._file = None


class SlotPoller(TargetPoller):
    """Slot usage of every target (server.csv); `free(target)` is the latest free-slot count."""

    filename = SERVER_CSV
    columns = COLUMNS

    def __init__(self, targets: list[str], run_dir: Path | None, interval_s: float = 1.0) -> None:
        super().__init__(targets, run_dir, interval_s)
        self.latest: dict[str, tuple[int, int]] = {}
        self.read_in: dict[str, int] = {}  # target -> the round (generation) of its latest reading

    def read(self, target: str) -> tuple[int, int] | None:
        slots = read_slots(target)
        if slots is None:
            self.failures[target] = "no batched_asr slots in /api/modules_info"
            return None
        self.latest[target] = slots
        self.read_in[target] = self.generation
        return slots

    def free(self, target: str) -> tuple[int | None, int]:
        """(free slots, the poll round they were read in) of the target's latest reading; (None, -1) before one."""
        slots = self.latest.get(target)
        return (None, -1) if slots is None else (slots[1] - slots[0], self.read_in[target])
