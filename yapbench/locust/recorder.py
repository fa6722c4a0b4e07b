"""Where finished sessions go, per Locust process: the current test's run directory (master or standalone), the
master (worker). Per test, rebuilt at every `test_start` from the options of that moment (the web UI's form rewrites
them): the plan (samples, targets, session settings), a run directory of its own, the slot poller, GPU samplers.

A worker keeps finished sessions in an outbox and hands them to the master with every periodic stats report
(`report_to_master`, every few seconds), not only at the end, so a worker that dies loses at most one interval.
The master (or a standalone process) appends them to the run directory and the live STT tab; a standalone process
gathers its own for STORE_INTERVAL_S first, so that one append (one pass over the records, one write and flush per
file) serves a batch of sessions, not each one: a thousand streams end some 150 sessions a second.

Locust's headless master quits by telling workers "quit" and waiting half a second, which loses whatever the
workers still hold. So when the master stops, it first asks every worker to drain (stop its users, which records
the sessions in flight as cancelled, and ship the outbox) and waits for each to answer, within a bound.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable

import gevent
from locust.env import Environment
from locust.runners import MasterRunner, Runner, WorkerRunner

from .. import __version__
from ..errors import UserError
from ..gpu import GpuSampler
from ..metrics import SessionResult
from ..routing import LeastLoaded
from ..report.phases import SETTLE_KEY, SPAWNING_COMPLETE_KEY, STOPPING_KEY
from ..runlog import RunLog, rows_of
from ..serverpoll import SlotPoller
from ..session import worker_name
from ..streamer import Streamer
from .live import LiveStats
from .plan import PlanBuilder, TestPlan
from .runs import RunEntry, RunHistory
from .workerwatch import WorkerWatch

log = logging.getLogger("yapbench")
PAYLOAD_KEY = "yapbench"
DRAIN = "yapbench_drain"  # master -> workers: stop users, ship everything
DRAINED = "yapbench_drained"  # worker -> master: the last records
DRAIN_SLACK_S = 15.0
STORE_INTERVAL_S = 0.25
SECRET_FLAGS = ("--api-key",)


class Recorder:
    """One per Locust environment, `environment.yapbench`; created at `init` (install)."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.is_worker = isinstance(environment.runner, WorkerRunner)
        self.is_master = isinstance(environment.runner, MasterRunner)
        self.live = LiveStats()
        self.record_listeners: list[Callable[[list], None]] = []  # also fed every stored batch (the exporter)
        self.outbox: list = []  # finished sessions' records not yet stored (standalone) or shipped (worker)
        self._store_later: gevent.Greenlet | None = None
        self._worker_active: dict[str, int] = {}
        self._drained: set[str] = set()
        self.gpu: GpuSampler | None = None
        self.builder = PlanBuilder()
        # Decoded at start, in every process: a bad sample, host, key file or gates file is one line and exit 2
        # here, not a traceback per task. Each test start rebuilds it from the options of that moment.
        self.plan: TestPlan = self.builder.build(self.opts, environment.host, check_gates=not self.is_worker)
        self.history = RunHistory()  # this process's tests and their run directories (master or standalone)
        self.test: RunEntry | None = None  # the current test's (None between tests and on workers)
        self.runlog: RunLog | None = None  # likewise
        self.late_sessions = 0  # records that arrived with no test running: counted and said once, not stored
        self._next_target = 0
        self.routing = LeastLoaded()  # --target-policy least_loaded: its count of this process's sessions
        self.poller: SlotPoller | None = None
        self.remote_gpus: list = []
        self.worker_watch: WorkerWatch | None = None
        # The open loop's arrival.ArrivalClock, set by arrival.py at each test start (read through its clock_for).
        self.arrival_clock: object | None = None
        self.stopping = False  # set when the load starts stopping: users start no new session from then on
        if isinstance(environment.runner, MasterRunner):
            self.worker_watch = WorkerWatch(environment.runner,
                                            lambda losses: self._write_meta({"workers_lost": losses}))

    @property
    def opts(self) -> Any:
        """Locust's parsed options (a Namespace): set before any init listener runs."""
        assert self.environment.parsed_options is not None
        return self.environment.parsed_options

    @property
    def runner(self) -> Runner:
        assert self.environment.runner is not None
        return self.environment.runner

    def begin_test(self) -> None:
        """At test start: the plan from the options of this start (the web UI's form, the master's spawn message),
        a run directory of its own (master or standalone), and the slot poller."""
        self.plan = self.builder.build(self.opts, self.environment.host, check_gates=not self.is_worker)
        self.stopping = False
        self._next_target = 0
        if not self.is_worker:
            self.test = self.history.begin(self.opts.run_dir)
            self.runlog = RunLog(self.test.dir)
            log.info("yapbench: test %d: run directory %s", self.test.number, self.test.dir)
        # The master polls to record server.csv; a process that runs users polls when it routes by load.
        if self.poller is not None:
            self.poller.stop()
        self.poller = None
        self.routing = LeastLoaded()  # its counts are relative to the old poller's readings
        if not self.is_worker or self.plan.policy == "least_loaded":
            self.poller = SlotPoller(self.plan.targets, None if self.runlog is None else self.runlog.dir)
            self.poller.start()
        if self.environment.web_ui is not None:
            self.live.reset(self.used_slots)  # the STT tab shows this test

    def used_slots(self) -> int | None:
        """The servers' used slots in all, from each one's latest poll; None until every target has answered
        (a target not read yet is missing data, not an idle server)."""
        poller = self.poller
        if poller is None or any(t not in poller.latest for t in self.plan.targets):
            return None
        return sum(poller.latest[t][0] for t in self.plan.targets)

    def end_test(self) -> RunEntry | None:
        """At test stop, once the others' test_stop listeners wrote their files: the test's run directory, closed
        (None on workers). Records arriving after this are not stored (`late_sessions`)."""
        if not self.is_worker:
            self.store_outbox()
        test, runlog = self.test, self.runlog
        self.test, self.runlog = None, None
        if test is None or runlog is None:
            return None
        test.ended_at = time.time()
        runlog.write_meta({"ended_at": test.ended_at, "sessions": runlog.sessions_written})
        runlog.close()
        return test

    # -- inputs shared by the process's users ----------------------------------------------------------------

    def next_target(self) -> str:
        """The target for a new session: round robin over --host's list, or the one with most free slots."""
        poller = self.poller
        targets = self.plan.targets
        if self.plan.policy == "least_loaded" and poller is not None and poller.latest:
            return self.routing.pick(targets, poller.free)
        target = targets[self._next_target % len(targets)]
        self._next_target += 1
        return target

    # -- records ----------------------------------------------------------------------------------------------

    def record(self, result: SessionResult) -> None:
        if self.plan.policy == "least_loaded" and self.poller is not None and result.target:
            self.routing.ended(result.target, self.poller.free)
        self.outbox.append(rows_of(result))
        if not self.is_worker and self._store_later is None:
            self._store_later = gevent.spawn_later(STORE_INTERVAL_S, self.store_outbox)

    def store_outbox(self) -> None:
        """Standalone: write the sessions gathered since the last call (at the end of each test too)."""
        self._store_later = None
        batch, self.outbox = self.outbox, []
        if batch:
            self._store(batch)

    def _store(self, batch: list) -> None:
        if self.runlog is None:
            if not self.late_sessions:
                log.warning("yapbench: session records arrived with no test running (after its stop); "
                            "they are not recorded")
            self.late_sessions += len(batch)
            return
        self.runlog.append(batch)
        for listener in self.record_listeners:
            listener(batch)
        # The live tab's windows and chart points are only worth their memory and CPU when a web UI can show them.
        if self.environment.web_ui is not None:
            self.live.add(batch)

    def on_report_to_master(self, data: dict) -> None:
        data[PAYLOAD_KEY] = {"batch": self.outbox, "active": Streamer.for_current_hub().active, "worker": worker_name()}
        self.outbox = []

    def on_worker_report(self, client_id: str, data: dict) -> None:
        payload = data.get(PAYLOAD_KEY)
        if not payload:
            return
        if self.worker_watch is not None:
            self.worker_watch.delivered_by(client_id, payload.get("worker", ""), len(payload["batch"]))
        self._worker_active[client_id] = payload["active"]
        self.live.active_streams = sum(self._worker_active.values())
        if payload["batch"]:
            self._store(payload["batch"])

    # -- draining workers at the end of a distributed run ------------------------------------------------------

    def drain_workers(self) -> None:
        """Master: ask every worker for its last records and wait for them (bounded)."""
        runner = self.runner
        assert isinstance(runner, MasterRunner)
        if self.worker_watch is not None:
            self.worker_watch.stop()  # workers leaving from here on are the end of the run, not losses
        expected = runner.worker_count
        if not expected:
            return
        self._drained = set()
        runner.send_message(DRAIN)
        limit = time.monotonic() + self.environment.stop_timeout + DRAIN_SLACK_S
        while len(self._drained) < expected and time.monotonic() < limit:
            gevent.sleep(0.05)
        if len(self._drained) < expected:
            log.warning("yapbench: %d of %d workers did not hand over their last records",
                        expected - len(self._drained), expected)

    def on_drained(self, msg) -> None:
        self._drained.add(msg.node_id)
        if msg.data:
            self._store(msg.data)

    def on_drain_request(self) -> None:
        """Worker: stop the users (in-flight sessions end as cancelled and are recorded), then ship the outbox."""
        self.runner.stop()
        batch, self.outbox = self.outbox, []
        self.runner.send_message(DRAINED, batch)

    def refresh_active(self) -> None:
        if not self.is_master:
            self.live.active_streams = Streamer.for_current_hub().active

    # -- run.json ---------------------------------------------------------------------------------------------

    def write_start_meta(self) -> None:
        opts, plan = self.opts, self.plan
        assert self.test is not None
        self._write_meta({
            "yapbench_version": __version__,
            "started_at": self.test.started_at,
            "test_number": self.test.number,
            "targets": plan.targets,
            "target_policy": plan.policy,
            "target": ",".join(plan.targets),
            "samples": {s.name: {"transcript": s.transcript, "language": s.language, "duration_s": s.duration_s}
                        for s in plan.corpus.samples},
            "users": opts.num_users,
            "spawn_rate": opts.spawn_rate,
            "speed": plan.session_cfg.speed,
            "auth": plan.session_cfg.auth,
            "silence_prefix_s": float(opts.silence_prefix),
            "session_settings": {"connect_timeout_s": plan.session_cfg.connect_timeout_s,
                                 "ready_timeout_s": plan.session_cfg.ready_timeout_s,
                                 "flush_frames": plan.session_cfg.flush_frames,
                                 "flush_timeout_s": plan.session_cfg.flush_timeout_s},
            "think_time_s": float(opts.think_time),
            "shape": opts.shape,
            "arrival_rate": opts.arrival_rate or None,  # open loop (None: closed loop)
            "arrival": opts.arrival if opts.arrival_rate else None,
            "goodput_objectives": opts.goodput,
            "conversation": opts.conversation or None,  # as typed (None: one clip per session)
            "run_time_s": opts.run_time,
            SETTLE_KEY: opts.settle,
            "distributed": self.is_master,
            "command": redact_argv(as_typed(sys.argv, Path.cwd())),
        })

    def mark(self, key: str) -> None:
        """run.json: when the last user started (spawning_complete; again at each change of a shape) and when the
        load stopped: the boundaries of the report's phases (report/phases.py). Nothing between tests."""
        if self.runlog is not None:
            self._write_meta({key: time.time()})

    def _write_meta(self, meta: dict) -> None:
        assert self.runlog is not None  # the master's or a standalone process's
        self.runlog.write_meta(meta)


def as_typed(argv: list[str], cwd: Path) -> list[str]:
    """The command line as a person typed it: `locust` for Locust's __main__.py (`python -m locust`, or the script
    `sys.argv[0]` names), and paths below the working directory relative to it (no home or checkout paths in a
    report)."""

    def relative(arg: str) -> str:
        path = Path(arg)
        return str(path.relative_to(cwd)) if path.is_absolute() and path.is_relative_to(cwd) else arg

    program = Path(argv[0]) if argv else Path("locust")
    name = "locust" if program.parent.name == "locust" or program.name == "locust" else program.name
    return [name, *map(relative, argv[1:])]


def redact_argv(argv: list[str]) -> list[str]:
    """The command line as run.json records it: values of secret flags replaced."""
    out, hide_next = [], False
    for arg in argv:
        if hide_next:
            out.append("***")
            hide_next = False
        elif arg in SECRET_FLAGS:
            out.append(arg)
            hide_next = True
        elif any(arg.startswith(f + "=") for f in SECRET_FLAGS):
            out.append(arg.split("=", 1)[0] + "=***")
        else:
            out.append(arg)
    return out


def recorder_for(environment: Environment) -> Recorder:
    """The environment's recorder; set by `install` at init."""
    return environment.yapbench  # type: ignore[attr-defined]


def install(environment: Environment) -> Recorder:
    """The recorder on `environment` (as `environment.yapbench`), and its listeners: it begins each test first (the
    others' test_start listeners read its plan and run directory) and stops its samplers first at test stop."""
    rec = Recorder(environment)
    environment.yapbench = rec  # type: ignore[attr-defined]
    events = environment.events
    events.test_start.add_listener(lambda **_: _on_test_start(rec))
    events.test_stopping.add_listener(lambda **_: setattr(rec, "stopping", True))
    events.test_stop.add_listener(lambda **_: _on_test_stop(rec))
    if rec.is_worker:
        events.report_to_master.add_listener(lambda client_id, data, **_: rec.on_report_to_master(data))
        rec.runner.register_message(DRAIN, lambda **_: rec.on_drain_request(), concurrent=True)
    else:
        events.spawning_complete.add_listener(lambda **_: rec.mark(SPAWNING_COMPLETE_KEY))
        events.test_stopping.add_listener(lambda **_: rec.mark(STOPPING_KEY))
    if rec.is_master:
        events.worker_report.add_listener(lambda client_id, data, **_: rec.on_worker_report(client_id, data))
        rec.runner.register_message(DRAINED, lambda msg, **_: rec.on_drained(msg))
        events.test_stopping.add_listener(lambda **_: rec.drain_workers())
    return rec


def _on_test_start(rec: Recorder) -> None:
    try:
        rec.begin_test()
    except UserError as exc:  # the form is checked before a start (webui.py); this is what slipped through
        log.error("yapbench: this test cannot start: %s", exc)
        gevent.spawn(rec.runner.stop)  # not from inside the runner's own start
        return
    if rec.worker_watch is not None:
        rec.worker_watch.start()
    if rec.runlog is not None:
        rec.write_start_meta()
        # GPUs of this machine (a server on the same host, or a generator on a GPU box); a note when there are none.
        rec.gpu = GpuSampler(rec.runlog.dir).start()
        if rec.gpu.note:
            log.info("yapbench: %s", rec.gpu.note)
        if rec.opts.provision:
            from .provisioned import remote_gpu_samplers

            rec.remote_gpus = remote_gpu_samplers(rec.opts, rec.runlog.dir)


def _on_test_stop(rec: Recorder) -> None:
    if rec.poller is not None:
        rec.poller.stop()
    if rec.gpu is not None:
        rec.gpu.stop()
        rec.gpu = None
    for sampler in rec.remote_gpus:
        sampler.stop()
    rec.remote_gpus = []
