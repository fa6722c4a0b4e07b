"""Where finished sessions go, per Locust process: the run directory (master or standalone), the master (worker).

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
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import gevent
from locust import events
from locust.env import Environment
from locust.runners import MasterRunner, Runner, WorkerRunner

from .. import __version__
from ..corpus import Corpus, build_corpus
from ..errors import UserError
from ..gates import load_gates
from ..gpu import GpuSampler
from ..metrics import SessionResult
from ..runlog import RunLog, default_run_dir, rows_of
from ..options import conversation_spec, server_urls, session_config
from ..routing import LeastLoaded
from ..report.phases import SETTLE_KEY, SPAWNING_COMPLETE_KEY, STOPPING_KEY
from ..samples import load_manifest, select
from ..serverpoll import SlotPoller
from ..session import SessionConfig, worker_name
from ..streamer import Streamer
from .live import LiveStats
from .workerwatch import WorkerWatch

log = logging.getLogger("yapbench")
PAYLOAD_KEY = "yapbench"
DRAIN = "yapbench_drain"  # master -> workers: stop users, ship everything
DRAINED = "yapbench_drained"  # worker -> master: the last records
DRAIN_SLACK_S = 15.0
STORE_INTERVAL_S = 0.25
SECRET_FLAGS = ("--api-key",)


class Recorder:
    """One per Locust environment; created at `init`."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        opts = self.opts
        self.is_worker = isinstance(environment.runner, WorkerRunner)
        self.is_master = isinstance(environment.runner, MasterRunner)
        self.live = LiveStats()
        self.record_listeners: list[Callable[[list], None]] = []  # also fed every stored batch (the exporter)
        self.outbox: list = []  # finished sessions' records not yet stored (standalone) or shipped (worker)
        self._store_later: gevent.Greenlet | None = None
        self._worker_active: dict[str, int] = {}
        self._drained: set[str] = set()
        self.gpu: GpuSampler | None = None
        self.samples = select(load_manifest(opts.manifest), opts.samples)
        # Decoded at start, in every process: a bad sample is one line and exit 2 here, not a traceback per task.
        self.corpus: Corpus = build_corpus(self.samples, opts.silence_prefix)
        if opts.gates and not self.is_worker:
            load_gates(opts.gates)  # a broken gates file fails now, not after the whole load
        self.runlog: RunLog | None = None
        if not self.is_worker:
            self.runlog = RunLog(opts.run_dir or default_run_dir())
        self.targets = parse_targets(environment.host)  # validated now; refreshed at each test start
        self.session_cfg = self._session_cfg()  # likewise: a bad option or key file is one line and exit 2 here
        self.conversation = conversation_spec(opts)
        self.policy = opts.target_policy
        self._next_target = 0
        self.routing = LeastLoaded()  # --target-policy least_loaded: its count of this process's sessions
        self.poller: SlotPoller | None = None
        self.remote_gpus: list = []
        self.worker_watch: WorkerWatch | None = None
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

    def _session_cfg(self) -> SessionConfig:
        opts = self.opts
        cfg = session_config(opts, self.targets[0], worker=worker_name())
        return replace(cfg, api_key=opts.api_key) if opts.api_key else cfg

    def refresh_targets(self) -> None:
        """At test start: the host list (and the options) may have come from the web UI form, the master or
        --provision. The users' session settings are derived here once, not per user (the key file is read once)."""
        self.targets = parse_targets(self.environment.host)
        self.session_cfg = self._session_cfg()
        self.conversation = conversation_spec(self.environment.parsed_options)
        # The master polls to record server.csv; a process that runs users polls when it routes by load.
        if self.poller is not None:
            self.poller.stop()
        self.poller = None
        self.routing = LeastLoaded()  # its counts are relative to the old poller's readings
        if not self.is_worker or self.policy == "least_loaded":
            self.poller = SlotPoller(self.targets, None if self.runlog is None else self.runlog.dir)
            self.poller.start()

    # -- inputs shared by the process's users ----------------------------------------------------------------

    def next_target(self) -> str:
        """The target for a new session: round robin over --host's list, or the one with most free slots."""
        poller = self.poller
        if self.policy == "least_loaded" and poller is not None and poller.latest:
            return self.routing.pick(self.targets, poller.free, poller.generation)
        target = self.targets[self._next_target % len(self.targets)]
        self._next_target += 1
        return target

    # -- records ----------------------------------------------------------------------------------------------

    def record(self, result: SessionResult) -> None:
        if self.policy == "least_loaded" and self.poller is not None and result.target:
            self.routing.ended(result.target, self.poller.generation)
        self.outbox.append(rows_of(result))
        if not self.is_worker and self._store_later is None:
            self._store_later = gevent.spawn_later(STORE_INTERVAL_S, self.store_outbox)

    def store_outbox(self) -> None:
        """Standalone: write the sessions gathered since the last call (at the end of the run too)."""
        self._store_later = None
        batch, self.outbox = self.outbox, []
        if batch:
            self._store(batch)

    def _store(self, batch: list) -> None:
        assert self.runlog is not None
        self.runlog.append(batch)
        for listener in self.record_listeners:
            listener(batch)
        # The live tab keeps every raw value (exact percentiles): only worth its memory when a web UI can show it;
        # a headless soak would otherwise grow by every session's values (the run directory has them all).
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
        opts = self.opts
        self._write_meta({
            "yapbench_version": __version__,
            "started_at": time.time(),
            "targets": self.targets,
            "target_policy": self.policy,
            "target": ",".join(self.targets),
            "samples": {s.name: {"transcript": s.transcript, "language": s.language, "duration_s": s.duration_s}
                        for s in self.samples},
            "users": opts.num_users,
            "spawn_rate": opts.spawn_rate,
            "speed": opts.speed,
            "auth": opts.auth,
            "shape": opts.shape,
            "arrival_rate": opts.arrival_rate or None,  # open loop (None: closed loop)
            "arrival": opts.arrival if opts.arrival_rate else None,
            "goodput_objectives": opts.goodput,
            "conversation": opts.conversation or None,  # as typed (None: one clip per session)
            "run_time_s": opts.run_time,
            SETTLE_KEY: opts.settle,
            "distributed": self.is_master,
            "command": redact_argv(sys.argv),
        })

    def mark(self, key: str) -> None:
        """run.json: when the last user started (spawning_complete; again at each change of a shape) and when the
        load stopped: the boundaries of the report's phases (report/phases.py)."""
        self._write_meta({key: time.time()})

    def write_end_meta(self) -> None:
        assert self.runlog is not None
        self.store_outbox()
        self.runlog.write_meta({"ended_at": time.time(), "sessions": self.runlog.sessions_written})

    def _write_meta(self, meta: dict) -> None:
        assert self.runlog is not None  # the master's or a standalone process's
        self.runlog.write_meta(meta)


def parse_targets(host: str | None) -> list[str]:
    """--host as a list of ws:// URLs (comma-separated for a fleet; empty: $YAP_ADDR:$YAP_PORT)."""
    try:
        return server_urls(host)
    except UserError as exc:
        raise UserError(f"--host {host!r}: {exc}") from None


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


_recorders: dict[int, Recorder] = {}


def recorder_for(environment: Environment) -> Recorder:
    return _recorders[id(environment)]


@events.init.add_listener
def _on_init(environment: Environment, **_kw) -> None:
    if environment.parsed_options is None or not hasattr(environment.parsed_options, "samples"):
        return  # a Locust run that did not load yapbench's options (library use)
    try:
        if environment.parsed_options.provision and not isinstance(environment.runner, WorkerRunner):
            from .provisioned import provision_or_exit

            provision_or_exit(environment)
        rec = Recorder(environment)
    except UserError as exc:
        log.error("yapbench: %s", exc)
        sys.exit(2)
    _recorders[id(environment)] = rec
    environment.events.test_stopping.add_listener(lambda **_: setattr(rec, "stopping", True))
    if rec.is_worker:
        environment.events.report_to_master.add_listener(lambda client_id, data, **_: rec.on_report_to_master(data))
        rec.runner.register_message(DRAIN, lambda **_: rec.on_drain_request(), concurrent=True)
    if rec.runlog is not None:
        environment.events.spawning_complete.add_listener(lambda **_: rec.mark(SPAWNING_COMPLETE_KEY))
        environment.events.test_stopping.add_listener(lambda **_: rec.mark(STOPPING_KEY))
    if rec.is_master:
        environment.events.worker_report.add_listener(
            lambda client_id, data, **_: rec.on_worker_report(client_id, data))
        rec.runner.register_message(DRAINED, lambda msg, **_: rec.on_drained(msg))
        environment.events.test_stopping.add_listener(lambda **_: rec.drain_workers())
    if rec.runlog is not None:
        log.info("yapbench: run directory %s", rec.runlog.dir)


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_kw) -> None:
    rec = _recorders.get(id(environment))
    if rec is None:
        return
    rec.refresh_targets()
    rec.stopping = False
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


@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_kw) -> None:
    rec = _recorders.get(id(environment))
    if rec is None:
        return
    if rec.poller is not None:
        rec.poller.stop()
    if rec.gpu is not None:
        rec.gpu.stop()
    for sampler in rec.remote_gpus:
        sampler.stop()
    rec.remote_gpus = []


def run_dir_of(environment: Environment) -> Path | None:
    rec = _recorders.get(id(environment))
    return rec.runlog.dir if rec is not None and rec.runlog is not None else None
