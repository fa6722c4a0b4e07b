"""The running server: its files (config with the key, launcher), the tmux sessions, and readiness."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from .. import launcher, servers, sttconfig
from ..context import Context, StepError, sha256
from ..layout import Instance, ws_url
from ..readiness import Probe, handshake, wait_ready
from .base import Check, CheckOnly
from .build import fingerprint_id, server_binary


@dataclass(frozen=True)
class InstanceFiles:
    instance: Instance
    config: str
    launcher: str

    def fingerprint(self, server: str) -> dict[str, object]:
        """What a running instance was started with; a difference means restart (like an Ansible handler)."""
        return {"config_sha": sha256(self.config), "launcher_sha": sha256(self.launcher), "server": server,
                "port": self.instance.port, "gpu": self.instance.gpu}


def instance_files(ctx: Context) -> list[InstanceFiles]:
    key = ctx.secrets.require_api_key()
    binary = server_binary(ctx) if ctx.host.builds_server else None
    out = []
    for inst in ctx.instances:
        config = sttconfig.render(ctx.host.model, [key], batch_size=ctx.host.batch_size, log_dir=inst.log_dir,
                                  instance_name=f"stt-{inst.port}")
        out.append(InstanceFiles(inst, config, launcher.render(ctx.host, ctx.layout, inst, binary)))
    return out


def server_identity(ctx: Context) -> str:
    if ctx.host.server_command:
        return "command:" + sha256(ctx.host.server_command)[:16]
    build = ctx.state.get("build")
    return "build:" + fingerprint_id(build) if build else "build:none"


class ServerFiles:
    """Config (mode 0600, holds the key: uploaded as a file, compared by hash) and launcher (0700) per instance."""

    id = "config"

    def _stale(self, ctx: Context) -> list[tuple[str, bytes, str, str]]:
        todo = []
        for f in instance_files(ctx):
            for path, text, mode in ((f.instance.config_path, f.config, "600"),
                                     (f.instance.launcher_path, f.launcher, "700")):
                remote = ctx.run(f"stat -c '%a' {shlex.quote(path)} 2>/dev/null && sha256sum {shlex.quote(path)}")
                have_mode, _, rest = remote.stdout.partition("\n")
                if have_mode.strip() != mode or rest.split()[:1] != [sha256(text)]:
                    why = "missing" if not remote.ok else "differs"
                    todo.append((path, text.encode(), mode, why))
        return todo

    def check(self, ctx: Context) -> Check:
        todo = self._stale(ctx)
        if not todo:
            return Check.ok(f"{2 * len(ctx.instances)} file(s) up to date")
        return Check.change("write " + ", ".join(f"{p.rsplit('/', 2)[-2]}/{p.rsplit('/', 1)[-1]} ({why})"
                                                  for p, _, _, why in todo))

    def apply(self, ctx: Context, check: Check) -> str:
        ctx.must(f"mkdir -p -m 0700 {shlex.quote(ctx.layout.base)}", "cannot create base directory")
        todo = self._stale(ctx)
        for path, data, mode, _ in todo:
            ctx.put_file(data, path, mode)
        return f"wrote {len(todo)} file(s)"


@dataclass(frozen=True)
class Action:
    kind: str  # "start", "restart", "stop"
    session: str
    reason: str
    files: InstanceFiles | None = None


class StartServer:
    id = "start"

    def _actions(self, ctx: Context) -> list[Action]:
        files = {f.instance.session: f for f in instance_files(ctx)}
        recorded = ctx.state["instances"]
        server = server_identity(ctx)
        actions = [Action("stop", s, "no longer wanted") for s in recorded if s not in files]
        for session, f in files.items():
            pid = servers.pane_pid(ctx, session)
            rec = recorded.get(session)
            if pid is None:
                actions.append(Action("start", session, "not running", f))
                continue
            if rec is None:
                raise StepError(f"tmux session {session} exists but provision did not start it: "
                                f"stop it or set another `session` in the inventory")
            want = f.fingerprint(server)
            diff = [k for k, v in want.items() if rec.get(k) != v]
            if diff or rec.get("pid") != pid:
                actions.append(Action("restart", session, f"{', '.join(diff) or 'pid'} changed", f))
        return actions

    def check(self, ctx: Context) -> Check:
        actions = self._actions(ctx)
        if not actions:
            return Check.ok(", ".join(f"{s} running" for s in ctx.state["instances"]))
        return Check.change("; ".join(f"{a.kind} {a.session} ({a.reason})" for a in actions))

    def apply(self, ctx: Context, check: Check) -> str:
        recorded = ctx.state["instances"]
        server = server_identity(ctx)
        done = []
        for a in self._actions(ctx):
            if a.kind in ("stop", "restart"):
                servers.stop(ctx, a.session, recorded.pop(a.session, None))
                ctx.save_state()
            if a.files is not None:
                inst = a.files.instance
                pid, started = servers.start(ctx, a.session, inst.launcher_path)
                if pid is None:
                    tail = ctx.run(f"tail -n 20 {shlex.quote(inst.log_path)} 2>/dev/null").stdout
                    raise StepError(f"{a.session} exited at once; server log:\n{ctx.secrets.redact(tail)}")
                recorded[a.session] = {**a.files.fingerprint(server), "pid": pid, "starttime": started,
                                       "dir": inst.dir, "log": inst.log_path}
                ctx.save_state()
            done.append(f"{a.kind} {a.session} ({a.reason})")
        return "; ".join(done)


def probe_instance(ctx: Context, inst: Instance, timeout: float = 5.0) -> Probe:
    host = ctx.host.tunnel_addr
    return handshake(ctx.ex.open_channel, host, inst.port, ctx.secrets.require_api_key(), timeout)


class WaitReady(CheckOnly):
    """Check-only: waiting is not a change. Plan mode probes once instead of waiting."""

    id = "ready"

    def __init__(self, interval: float = 1.0):
        self.interval = interval

    def check(self, ctx: Context) -> Check:
        for inst in ctx.instances:
            # Both lambdas are called within this iteration only (B023 cannot see that).
            alive = lambda: servers.pane_pid(ctx, inst.session) is not None  # noqa: E731, B023
            if ctx.plan:
                if not alive() or not probe_instance(ctx, inst).ready:
                    return Check.change(f"wait for Ready on {inst.session} (port {inst.port})")
                continue
            result = wait_ready(lambda: probe_instance(ctx, inst), alive, ctx.host.ready_timeout, self.interval)  # noqa: B023
            if not result.ready:
                tail = ctx.run(f"tail -n 15 {shlex.quote(inst.log_path)} 2>/dev/null").stdout
                raise StepError(f"{inst.session} (port {inst.port}): {result.reason}; server log:\n"
                                f"{ctx.secrets.redact(tail).rstrip()}")
        ctx.info["targets"] = [ws_url(ctx.host, i) for i in ctx.instances]
        return Check.ok("Ready: " + " ".join(ctx.info["targets"]))
