"""Run step lists on hosts: one thread and one SSH connection per host, steps in order, a result row each.

A failed step skips the rest of that host; other hosts carry on. Planning runs every check for real and
applies nothing.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable, Sequence

from yapbench.errors import UserError

from .context import Context, StepError
from .credentials import Secrets
from .executor import Executor, SshOptions, connect, describe_connect_error
from .inventory import HostSpec
from .steps.base import Step


class Status(StrEnum):
    OK = "ok"
    CHANGED = "changed"
    WOULD_CHANGE = "would change"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass
class StepResult:
    step: str
    status: Status
    message: str = ""
    elapsed_s: float = 0.0
    error: str = ""  # the failing command and its output tail


@dataclass
class HostResult:
    host: str
    steps: list[StepResult] = field(default_factory=list)
    targets: list[str] = field(default_factory=list)  # ws:// URLs of the server instances
    info: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return all(s.status is not Status.FAILED for s in self.steps)

    @property
    def changed(self) -> bool:
        return any(s.status in (Status.CHANGED, Status.WOULD_CHANGE) for s in self.steps)

    @property
    def error(self) -> str:
        return next((s.error or s.message for s in self.steps if s.status is Status.FAILED), "")

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "ok": self.ok, "changed": self.changed, "elapsed_s": round(self.elapsed_s, 2),
                "targets": self.targets, "info": self.info,
                "steps": [{"step": s.step, "status": str(s.status), "message": s.message,
                           "elapsed_s": round(s.elapsed_s, 2), "error": s.error} for s in self.steps]}


Progress = Callable[[str, str, str], None]  # (host, step id, status text)


def _noop(host: str, step: str, status: str) -> None:
    pass


def run_steps(ctx: Context, steps: Sequence[Step], progress: Progress = _noop) -> list[StepResult]:
    results: list[StepResult] = []
    blocked: str | None = None
    for step in steps:
        if blocked:
            results.append(StepResult(step.id, Status.SKIPPED, f"after failed {blocked}"))
            continue
        progress(ctx.host.name, step.id, "checking")
        t0 = time.monotonic()
        try:
            check = step.check(ctx)
            if check.skip:
                result = StepResult(step.id, Status.SKIPPED, check.reason)
            elif not check.needed:
                result = StepResult(step.id, Status.OK, check.reason)
            elif ctx.plan:
                result = StepResult(step.id, Status.WOULD_CHANGE, check.reason)
            else:
                progress(ctx.host.name, step.id, check.reason)
                result = StepResult(step.id, Status.CHANGED, step.apply(ctx, check) or check.reason)
                ctx.changed.add(step.id)
        except StepError as exc:
            result = StepResult(step.id, Status.FAILED, str(exc).splitlines()[0], error=ctx.secrets.redact(exc.detail))
        except UserError as exc:
            result = StepResult(step.id, Status.FAILED, str(exc), error=str(exc))
        except Exception as exc:  # an SSH drop or a bug must still end in this host's row, not kill the run
            msg = ctx.secrets.redact(f"{type(exc).__name__}: {exc}")
            result = StepResult(step.id, Status.FAILED, msg, error=msg)
        result.elapsed_s = time.monotonic() - t0
        results.append(result)
        progress(ctx.host.name, step.id, str(result.status))
        if result.status is Status.FAILED:
            blocked = step.id
    return results


Connector = Callable[[HostSpec], Executor]


def run_host(host: HostSpec, steps: Sequence[Step], *, secrets: Secrets, connector: Connector, plan: bool = False,
             progress: Progress = _noop) -> HostResult:
    t0 = time.monotonic()
    out = HostResult(host.name)
    progress(host.name, "connect", "connecting")
    try:
        ex = connector(host)
    except Exception as exc:
        msg = describe_connect_error(exc)
        out.steps = [StepResult("connect", Status.FAILED, msg, error=msg)]
        out.steps += [StepResult(s.id, Status.SKIPPED, "after failed connect") for s in steps]
        out.elapsed_s = time.monotonic() - t0
        progress(host.name, "connect", "failed")
        return out
    try:
        ctx = Context(host, ex, secrets, plan=plan)
        out.steps = [StepResult("connect", Status.OK, "host key verified"), *run_steps(ctx, steps, progress)]
        out.targets = ctx.info.pop("targets", [])
        out.info = ctx.info
    finally:
        ex.close()
    out.elapsed_s = time.monotonic() - t0
    return out


def fabric_connector(ssh: SshOptions, secrets: Secrets, log_dir: Path | None = None) -> Connector:
    def connector(host: HostSpec) -> Executor:
        log = None
        if log_dir is not None:
            log_dir.mkdir(parents=True, exist_ok=True)
            log = open(log_dir / f"{host.name.replace(':', '_').replace('/', '_')}.log", "a")
        try:
            return connect(host, ssh, redact=secrets.redact, log=log)
        except BaseException:
            if log:
                log.close()
            raise

    return connector


def run_hosts(hosts: Sequence[HostSpec], make_steps: Callable[[HostSpec], Sequence[Step]], *, secrets: Secrets,
              connector: Connector, plan: bool = False, max_workers: int = 16,
              progress: Progress = _noop) -> list[HostResult]:
    """All hosts in parallel (`max_workers=1` is serial); results in inventory order."""
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(hosts)))) as pool:
        futures = [pool.submit(run_host, h, make_steps(h), secrets=secrets, connector=connector, plan=plan,
                               progress=progress) for h in hosts]
        return [f.result() for f in futures]
