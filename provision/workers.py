"""`provision workers`: yapbench on load hosts, and Locust workers there in tmux, for Locust's distributed mode.

The local checkout travels as a deterministic source tarball (package code, locustfiles and the samples the
users stream), installed into a venv on the host with pip; only dependencies come from PyPI.
"""

from __future__ import annotations

import gzip
import io
import shlex
import subprocess
import tarfile
import time
from functools import lru_cache
from pathlib import Path

from yapbench.errors import UserError

from . import servers
from .context import Context, StepError, sha256
from .steps.base import Check, CheckOnly, Step
from .inventory import HostSpec

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("pyproject.toml", "README.md", "yapbench", "provision", "locustfiles", "samples")
SESSION = "yapbench-worker"
MIN_PYTHON = (3, 11)
STARTUP_GRACE_S = 3.0


def _files(repo: Path) -> list[Path]:
    """Tracked files when this is a git checkout (no stray caches or reports), else everything under SHIPPED."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--", *SHIPPED], capture_output=True,
                             check=True).stdout.decode()
        return sorted(repo / f for f in out.split("\0") if f and (repo / f).is_file())
    except (OSError, subprocess.CalledProcessError):
        found = []
        for name in SHIPPED:
            p = repo / name
            found += [p] if p.is_file() else [f for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts]
        return sorted(found)


@lru_cache(maxsize=1)
def source_tarball(repo: Path = REPO) -> bytes:
    """Same tree, same bytes (sorted, mtime 0): its hash decides whether a host needs a reinstall."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in _files(repo):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(repo)))
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with open(path, "rb") as f:
                tar.addfile(info, f)
    if not buf.getvalue():
        raise UserError(f"nothing to ship from {repo}")
    return gzip.compress(buf.getvalue(), mtime=0)  # tarfile's own gzip stamps the current time


def _paths(ctx: Context) -> dict[str, str]:
    base = ctx.layout.base
    return {"src": f"{base}/src", "venv": f"{base}/venv", "tarball": f"{base}/yapbench-src.tar.gz",
            "launcher": f"{base}/worker.sh", "log": f"{base}/worker.log", "key": f"{base}/api_key"}


class WorkerPreflight(CheckOnly):
    id = "preflight"

    def check(self, ctx: Context) -> Check:
        if not ctx.facts.has("tmux"):
            raise StepError("tmux is not installed on the load host")
        want = ", ".join(map(str, MIN_PYTHON))
        r = ctx.run(f"{shlex.quote(ctx.host.python)} -c 'import sys, venv, ensurepip; "
                    f"print(sys.version.split()[0]); sys.exit(sys.version_info[:2] < ({want}))'")
        if not r.ok:
            raise StepError(f"{ctx.host.python} must be Python >= {'.'.join(map(str, MIN_PYTHON))} with venv "
                            f"and ensurepip (Ubuntu: apt-get install python3.11-venv)", r)
        return Check.ok(f"Python {r.stdout.strip()}, tmux")


class InstallYapbench:
    id = "install"

    def check(self, ctx: Context) -> Check:
        digest = sha256(source_tarball())
        p = _paths(ctx)
        if ctx.state.get("workers", {}).get("source_sha") == digest and ctx.run(_imports_check(p)).ok:
            return Check.ok(f"yapbench {digest[:12]} installed")
        return Check.change(f"install yapbench {digest[:12]} into {p['venv']}")

    def apply(self, ctx: Context, check: Check) -> str:
        p, q = _paths(ctx), shlex.quote
        data = source_tarball()
        ctx.put_file(data, p["tarball"], "600")
        ctx.must(f"rm -rf {q(p['src'])} && mkdir -p {q(p['src'])} && tar -xzf {q(p['tarball'])} -C {q(p['src'])}",
                 "cannot unpack the yapbench source")
        ctx.must(f"test -x {q(p['venv'])}/bin/pip || {q(ctx.host.python)} -m venv {q(p['venv'])}",
                 "cannot create the venv", timeout=300)
        # editable: the samples and locustfiles stay next to the package, where yapbench looks for them
        ctx.run_long(f"{q(p['venv'])}/bin/pip install -q -e {q(p['src'])}", "pip install failed", timeout_s=1800)
        ctx.state.setdefault("workers", {})["source_sha"] = sha256(data)
        ctx.save_state()
        return f"installed into {p['venv']}"


def _imports_check(p: dict[str, str]) -> str:
    return f"{shlex.quote(p['venv'])}/bin/python -c 'import locust, yapbench'"


def launcher(ctx: Context, master: str, master_port: int, processes: int | None) -> str:
    p, q = _paths(ctx), shlex.quote
    # `python -m locust`, not bin/locust: that script exists only where pip installed locust into this very venv
    cmd = (f"{q(p['venv'])}/bin/python -m locust -f locustfiles/stt.py --worker --master-host {q(master)} "
           f"--master-port {int(master_port)}" + (f" --processes {int(processes)}" if processes else ""))
    key_env = (f'export KYUTAI_API_KEY="$(cat {q(p["key"])})"\n' if ctx.secrets.api_key else "")
    return (f"#!/usr/bin/env bash\n# written by yapbench provision: a Locust worker\nset -e\n{key_env}"
            f"cd {q(p['src'])}\nexec {cmd} >> {q(p['log'])} 2>&1\n")


class StartWorker:
    id = "worker"

    def __init__(self, master: str, master_port: int, processes: int | None):
        self.master, self.master_port, self.processes = master, master_port, processes

    def check(self, ctx: Context) -> Check:
        script = launcher(ctx, self.master, self.master_port, self.processes)
        rec = ctx.state.get("workers", {}).get("process")
        if servers.pane_pid(ctx, SESSION) is None:
            return Check.change(f"start {SESSION} -> {self.master}:{self.master_port}")
        if not rec or rec.get("launcher_sha") != sha256(script) or rec.get("source_sha") != sha256(source_tarball()):
            return Check.change(f"restart {SESSION} (master, options or code changed)")
        return Check.ok(f"{SESSION} running (pid {rec.get('pid')}) -> {self.master}:{self.master_port}")

    def apply(self, ctx: Context, check: Check) -> str:
        p = _paths(ctx)
        workers = ctx.state.setdefault("workers", {})
        servers.stop(ctx, SESSION, workers.pop("process", None))
        if ctx.secrets.api_key:
            ctx.put_file(ctx.secrets.api_key.encode(), p["key"], "600")
        script = launcher(ctx, self.master, self.master_port, self.processes)
        ctx.put_file(script.encode(), p["launcher"], "700")
        pid, started = servers.start(ctx, SESSION, p["launcher"])
        deadline = time.monotonic() + STARTUP_GRACE_S  # a worker that cannot start (bad venv, bad options) dies fast
        while pid is not None and time.monotonic() < deadline:
            time.sleep(0.5)
            pid = servers.pane_pid(ctx, SESSION)
        if pid is None:
            tail = ctx.run(f"tail -n 20 {shlex.quote(p['log'])} 2>/dev/null").stdout
            raise StepError(f"{SESSION} exited at once; log:\n{ctx.secrets.redact(tail)}")
        workers["process"] = {"pid": pid, "starttime": started, "launcher_sha": sha256(script),
                              "source_sha": sha256(source_tarball())}
        ctx.save_state()
        return f"started {SESSION} (pid {pid})"


class StopWorker:
    id = "stop-worker"

    def check(self, ctx: Context) -> Check:
        if servers.pane_pid(ctx, SESSION) is None and not ctx.state.get("workers", {}).get("process"):
            return Check.ok("no worker running")
        return Check.change(f"stop {SESSION}")

    def apply(self, ctx: Context, check: Check) -> str:
        note = servers.stop(ctx, SESSION, ctx.state.get("workers", {}).pop("process", None))
        ctx.save_state()
        return note


def up_steps(master: str | None, master_port: int = 5557, processes: int | None = None):
    if not master:
        raise UserError("provision workers needs --master HOST (the Locust master the workers connect to)")

    def make(host: HostSpec) -> list[Step]:
        return [WorkerPreflight(), InstallYapbench(), StartWorker(master, master_port, processes)]

    return make


def stop_steps(host: HostSpec) -> list[Step]:
    return [StopWorker()]
