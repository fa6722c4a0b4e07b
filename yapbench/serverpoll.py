"""Poll each target's /api/modules_info once a second: slot usage over time (server.csv), and free slots per target.

The real server exposes `used_slots` / `total_slots` for its BatchedAsr module (docs/protocol.md §1); they show
capacity from the server's side, and let a fleet load send each new stream to the least-loaded target.
"""

from __future__ import annotations

import csv
import json
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import gevent

from .runlog import SERVER as SERVER_CSV, SERVER_COLUMNS as COLUMNS  # the file's format is runlog's


def modules_info_url(ws_url: str) -> str:
    parts = urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return f"{scheme}://{parts.netloc}/api/modules_info"


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


class SlotPoller:
    """A greenlet that records slot usage of every target; `free(target)` is the latest free-slot count."""

    def __init__(self, targets: list[str], run_dir: Path | None, interval_s: float = 1.0) -> None:
        self.targets = targets
        self.interval_s = interval_s
        self.latest: dict[str, tuple[int, int]] = {}
        self.generation = 0  # bumps after every poll round, so users know the counts are fresh
        self._path = Path(run_dir) / SERVER_CSV if run_dir else None
        self._greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        if self._greenlet is None:
            self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None

    def free(self, target: str) -> int | None:
        slots = self.latest.get(target)
        return None if slots is None else slots[1] - slots[0]

    def _run(self) -> None:
        f = None
        if self._path is not None:
            new = not self._path.exists()
            f = open(self._path, "a", newline="", encoding="utf-8")
            if new:
                f.write(",".join(COLUMNS) + "\n")
        writer = csv.writer(f, lineterminator="\n") if f else None
        try:
            while True:
                for target in self.targets:
                    slots = read_slots(target)
                    if slots is None:
                        continue
                    self.latest[target] = slots
                    if writer:
                        writer.writerow((round(time.time(), 3), target, *slots))
                self.generation += 1
                if f:
                    f.flush()
                gevent.sleep(self.interval_s)
        finally:
            if f:
                f.close()
