"""status, stop and clean: read what is running from tmux and the state file; remove only what provision made."""

from __future__ import annotations

import shlex
from typing import Any

from yapbench.errors import UserError

from .. import apt, servers
from ..context import Context, StepError
from ..layout import Instance, ws_url
from ..readiness import http_get_json
from .base import Check, CheckOnly
from .server import probe_instance

LOG_ERRORS = r"task failed|panicked|^Error:"
GPU_STATUS = ("nvidia-smi --query-gpu=index,name,memory.used,memory.total,utilization.gpu "
              "--format=csv,noheader,nounits")


def desired_instances(ctx: Context) -> list[Instance]:
    """The inventory's instances, or none when they cannot be worked out (stop/clean still use the state file)."""
    try:
        return ctx.instances
    except UserError:
        return []


def known_sessions(ctx: Context) -> dict[str, dict[str, Any]]:
    """Session -> state record, for recorded and currently configured instances alike."""
    sessions = {s: dict(rec) for s, rec in ctx.state["instances"].items()}
    for inst in desired_instances(ctx):
        sessions.setdefault(inst.session, {"port": inst.port, "gpu": inst.gpu, "log": inst.log_path})
    return sessions


def _slots(modules: Any) -> str | None:
    for m in modules if isinstance(modules, list) else []:
        if isinstance(m, dict) and "total_slots" in m:
            return f"{m.get('used_slots')}/{m.get('total_slots')}"
    return None


class ServerStatus(CheckOnly):
    id = "status"

    def check(self, ctx: Context) -> Check:
        insts = {i.session: i for i in desired_instances(ctx)}
        entries, down = [], []
        for session, rec in known_sessions(ctx).items():
            pid = servers.pane_pid(ctx, session)
            port = int(rec.get("port") or 0)
            entry: dict[str, Any] = {"session": session, "pid": pid, "port": port, "gpu": rec.get("gpu"),
                                     "running": pid is not None, "listening": servers.port_listening(ctx, port)}
            if pid is not None and session in insts:
                entry["url"] = ws_url(ctx.host, insts[session])
                entry["ready"] = (probe_instance(ctx, insts[session]).reason if ctx.secrets.api_key
                                  else "unknown (no KYUTAI_API_KEY)")
                host = ctx.host.tunnel_addr
                entry["slots"] = _slots(http_get_json(ctx.ex.open_channel, host, port, "/api/modules_info"))
            if rec.get("log"):
                log = shlex.quote(rec["log"])
                tail = ctx.run(f"tail -n 5 {log} 2>/dev/null").stdout
                entry["log_tail"] = ctx.secrets.redact(tail).splitlines()
                # the model loop can die while the port stays open (docs/provision.md): count its error lines
                errors = ctx.run(f"grep -cE {shlex.quote(LOG_ERRORS)} {log} 2>/dev/null").stdout.strip()
                entry["log_errors"] = int(errors) if errors.isdigit() else 0
            entries.append(entry)
            if pid is None:
                down.append(session)
        ctx.info["instances"] = entries
        if ctx.facts.has("nvidia-smi"):
            ctx.info["gpus"] = [line.strip() for line in ctx.run(GPU_STATUS).stdout.splitlines() if line.strip()]
        if not entries:
            raise StepError("no server configured or recorded here")
        if down:
            raise StepError(f"not running: {', '.join(down)}")
        return Check.ok("; ".join(
            f"{e['session']} pid {e['pid']} port {e['port']}"
            f"{' listening' if e['listening'] else ' NOT listening' if e['listening'] is False else ''}"
            f"{', ' + e['ready'] if e.get('ready') else ''}{', slots ' + e['slots'] if e.get('slots') else ''}"
            f"{', %d error line(s) in log' % e['log_errors'] if e.get('log_errors') else ''}"
            for e in entries))


class Stop:
    id = "stop"

    def _running(self, ctx: Context) -> dict[str, dict[str, Any]]:
        return {s: rec for s, rec in known_sessions(ctx).items()
                if servers.pane_pid(ctx, s) is not None or s in ctx.state["instances"]}

    def check(self, ctx: Context) -> Check:
        running = self._running(ctx)
        if not running:
            return Check.ok("nothing running")
        return Check.change("stop " + ", ".join(running))

    def apply(self, ctx: Context, check: Check) -> str:
        notes = []
        for session, rec in self._running(ctx).items():
            notes.append(servers.stop(ctx, session, ctx.state["instances"].get(session) or rec))
            ctx.state["instances"].pop(session, None)
            ctx.save_state()
        return "; ".join(notes)


def removable(path: str, home: str) -> bool:
    """Refuse anything that is the home directory, one of its ancestors, or too shallow to be ours."""
    p = path.rstrip("/")
    return p.count("/") >= 2 and not (home.rstrip("/") + "/").startswith(p + "/")


def _existing(ctx: Context, paths: list[str]) -> list[str]:
    if not paths:
        return []
    r = ctx.run("ls -d " + " ".join(shlex.quote(p) for p in paths) + " 2>/dev/null")
    return r.stdout.split()


def _rm(ctx: Context, paths: list[str]) -> None:
    for p in paths:
        if not removable(p, ctx.facts.home):
            raise StepError(f"refusing to remove {p}: check base_dir in the inventory")
        ctx.must(f"rm -rf {shlex.quote(p)}", f"cannot remove {p}")


class CleanFiles:
    """Runtime files: instance dirs (config with the key, launcher, logs) and build job logs. Keeps software."""

    id = "clean-files"

    def _paths(self, ctx: Context) -> list[str]:
        lay = ctx.layout
        return _existing(ctx, [lay.instances_dir, lay.jobs_dir])

    def check(self, ctx: Context) -> Check:
        paths = self._paths(ctx)
        return Check.change("remove " + " ".join(paths)) if paths else Check.ok("no runtime files")

    def apply(self, ctx: Context, check: Check) -> str:
        paths = self._paths(ctx)
        _rm(ctx, paths)
        return "removed " + " ".join(paths)


class CleanSoftware:
    """`clean --all`: what the state file says provision installed, then the base directory (state, HF cache)."""

    id = "clean-all"

    def _plan(self, ctx: Context) -> list[str]:
        inst = ctx.state["installed"]
        todo = []
        if inst.get("server_binary"):
            todo.append(f"server {inst['server_binary']}")
        if inst.get("rust"):
            todo.append("Rust (rustup self uninstall)")
        if inst.get("apt_packages"):
            todo.append(f"{len(inst['apt_packages'])} apt package(s)")
        # hf_home outside base_dir is the user's cache, shared with other tools: left alone
        todo += [f"dir {p}" for p in _existing(ctx, [ctx.layout.base])]
        return todo

    def check(self, ctx: Context) -> Check:
        todo = self._plan(ctx)
        return Check.change("remove " + ", ".join(todo)) if todo else Check.ok("nothing installed by provision")

    def apply(self, ctx: Context, check: Check) -> str:
        inst, lay = ctx.state["installed"], ctx.layout
        done = self._plan(ctx)
        binary = inst.get("server_binary")
        if binary and binary.startswith(lay.cargo_home + "/") and not ctx.host.source_dir:
            ctx.run(f"{shlex.quote(lay.cargo)} uninstall {shlex.quote(ctx.host.crate)}", timeout=120)
        elif binary:
            _rm(ctx, [binary])
        if inst.get("rust"):
            ctx.must(f"{shlex.quote(lay.cargo_home)}/bin/rustup self uninstall -y", "rustup self uninstall failed",
                     timeout=300)
        apt.purge(ctx, list(inst.get("apt_packages", [])))
        _rm(ctx, _existing(ctx, [lay.base]))
        return "removed " + ", ".join(done)
