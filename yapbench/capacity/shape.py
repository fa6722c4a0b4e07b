"""The capacity search as a Locust load shape: it sets the user count, closes measurement windows, decides.

It runs in the Locust master (or the standalone process), reads its own run directory between windows and
writes capacity.json. The window summaries (the report's pandas code) run in a child process: in a thread they
would hold the GIL for hundreds of milliseconds and delay the frames this very process is pacing.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import gevent
import gevent.subprocess
import numpy as np
from locust import LoadTestShape

from ..slo import parse_condition
from . import CAPACITY_JSON
from .search import CapacitySearch, SearchSpec, evaluate_level, is_stable

log = logging.getLogger("yapbench")


def window_summary(run_dir: Path, level_start: float, w_start: float, w_end: float) -> dict:
    """Summary of the sessions that started at this level and ended in [w_start, w_end)."""
    from ..report.load import load_run
    from ..report.summary import summarize_data

    run = load_run(run_dir, since=level_start)
    s = run.sessions
    keep = ((s["ended_at"] >= w_start) & (s["ended_at"] < w_end) & (s["outcome"] != "cancelled")).to_numpy()
    new_row = np.cumsum(keep) - 1
    words = run.words
    if len(words):
        wmask = keep[words["srow"].to_numpy()]
        words = words[wmask].copy()
        words["srow"] = new_row[words["srow"].to_numpy()]
    lag = run.send_lag.window(w_start, w_end)
    window = replace(run, sessions=s[keep].reset_index(drop=True), words=words.reset_index(drop=True),
                     send_lag=lag, start=w_start, end=w_end)
    return summarize_data(window)


class WindowSummaryFailed(Exception):
    """The child process that summarises a window failed; the message is its last line of stderr."""


def _reason(exc: BaseException | None) -> str:
    return str(exc) if isinstance(exc, WindowSummaryFailed) else repr(exc)


class CapacityShape(LoadTestShape):
    """Holds each level for settle + windows; asks CapacitySearch for the next one; stops when it says so."""

    def __init__(self, spec: SearchSpec, run_dir: Path, spawn_rate: float) -> None:
        super().__init__()
        self.spec = spec
        self.run_dir = Path(run_dir)
        self.spawn_rate = spawn_rate
        self.conditions = [parse_condition(s) for s in spec.slos]
        self.search = CapacitySearch(spec)
        self.users: int | None = None
        self.level_start = 0.0
        self.window_values: list[list[float | None]] = []
        self._pending: gevent.Greenlet | None = None
        self._done = False

    @classmethod
    def from_spec_file(cls, path: Path, run_dir: Path, spawn_rate: float) -> "CapacityShape":
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        raw["slos"] = tuple(raw["slos"])
        return cls(SearchSpec(**raw), run_dir, spawn_rate)

    def _start_level(self, users: int) -> None:
        log.info("yapbench capacity: holding %d streams", users)
        self.users = users
        self.level_start = time.time()
        self.window_values = []

    def _windows_closed(self) -> int:
        measured = time.time() - self.level_start - self.spec.settle_s
        return max(0, int(measured // self.spec.window_s))

    def tick(self):
        if self._done:
            return None
        if self.users is None:
            self._start_level(self.search.first_level)
        if self._pending is not None:
            if not self._pending.ready():
                return self.users, self.spawn_rate
            pending, self._pending = self._pending, None
            if not pending.successful():
                # Without its window summaries the search cannot decide anything: holding this level until -t
                # (24 h for `yapbench capacity`) would only load the server for nothing. Stop, and say why.
                log.error("yapbench capacity: a window summary of %s failed (%s): stopping the load",
                          self.run_dir, _reason(pending.exception))
                self._done = True
                return None
            result = pending.value
            if result is not None:
                self._advance(result)
                if self._done:
                    return None
        k = len(self.window_values)
        if self._windows_closed() > k:
            w_start = self.level_start + self.spec.settle_s + k * self.spec.window_s
            self._pending = gevent.spawn(self._close_window, w_start)
        return self.users, self.spawn_rate

    def _summary(self, w_start: float, w_end: float) -> dict:
        out = gevent.subprocess.run(
            [sys.executable, "-m", "yapbench.capacity.shape", str(self.run_dir), repr(self.level_start),
             repr(w_start), repr(w_end)], capture_output=True, text=True)
        if out.returncode != 0:
            last = out.stderr.strip().splitlines()[-1:] or [f"exit status {out.returncode}"]
            raise WindowSummaryFailed(last[0])
        return json.loads(out.stdout)

    def _close_window(self, w_start: float) -> dict | None:
        """Summarise one window; return the level's data once the level is done, else None."""
        summary = self._summary(w_start, w_start + self.spec.window_s)
        self.window_values.append([c.path.value(summary) for c in self.conditions])
        n = len(self.window_values)
        stable = is_stable(self.window_values, self.spec.stable_windows, self.spec.tolerance)
        if not stable and n < self.spec.max_windows:
            return None
        pooled_from = self.level_start + self.spec.settle_s + (n - self.spec.stable_windows) * self.spec.window_s
        return {"summary": self._summary(pooled_from, w_start + self.spec.window_s), "windows": n, "stable": stable}

    def _advance(self, result: dict) -> None:
        assert self.users is not None  # a level is running
        level = evaluate_level(self.users, result["summary"], self.conditions, result["windows"], result["stable"],
                               self.spec.generator_limit_ms)
        held = level.passed(self.spec.stop_on_rejection)
        why = level.broken + (["rejections"] if level.rejection_rate > 0 else []) + (
            [f"generator send lag p99 > {level.generator_limit_ms:g} ms"] if level.generator_bound else [])
        log.info("yapbench capacity: %d streams %s", level.users, "hold" if held else f"FAIL ({', '.join(why)})")
        nxt = self.search.record(level)
        self._write()
        if nxt is None:
            self._done = True
        else:
            self._start_level(nxt)

    def _write(self) -> None:
        path = self.run_dir / CAPACITY_JSON
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.search.answer(), indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)


if __name__ == "__main__":  # the child process of CapacityShape._summary
    # Below the generator's priority: on a small host this child's second of pandas would otherwise take a core
    # from the process pacing the frames, and the search would read its own disturbance as a generator limit.
    os.nice(10)
    print(json.dumps(window_summary(Path(sys.argv[1]), *map(float, sys.argv[2:5]))))
