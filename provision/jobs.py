"""Long remote work run detached and polled, so a dropped SSH session does not kill a ten-minute compile.

The job writes its exit code to a file; a rerun of `up` while the job still runs attaches to it instead of
starting a second one.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass

from .context import Context, StepError
from .executor import CmdResult


@dataclass(frozen=True)
class JobFiles:
    script: str
    log: str
    rc: str
    pid: str


def job_files(ctx: Context, name: str) -> JobFiles:
    d = f"{ctx.layout.jobs_dir}/{name}"
    return JobFiles(f"{d}.sh", f"{d}.log", f"{d}.rc", f"{d}.pid")


def start_command(files: JobFiles, timeout_s: int) -> str:
    q = shlex.quote
    body = (f"echo $$ > {q(files.pid)}; timeout -k 30 {timeout_s} {q(files.script)} > {q(files.log)} 2>&1; "
            f"echo $? > {q(files.rc)}.tmp && mv {q(files.rc)}.tmp {q(files.rc)}")
    running = f"[ -f {q(files.pid)} ] && [ ! -f {q(files.rc)} ] && kill -0 \"$(cat {q(files.pid)})\" 2>/dev/null"
    return (f"if {running}; then echo attached; else rm -f {q(files.rc)}; "
            f"setsid nohup bash -c {q(body)} > /dev/null 2>&1 < /dev/null & echo started; fi")


def run_detached(ctx: Context, name: str, script: str, what: str, *, timeout_s: int,
                 poll_s: float = 10.0) -> str:
    """Run `script` (bash) detached under a remote `timeout`, poll until it ends; StepError with its log tail."""
    files = job_files(ctx, name)
    ctx.put_file(script.encode(), files.script, "700")
    ctx.must(start_command(files, timeout_s), f"cannot start {name}")
    deadline = time.monotonic() + timeout_s + 90
    while True:
        r = ctx.run(f"cat {shlex.quote(files.rc)} 2>/dev/null")
        if r.ok and r.stdout.strip().lstrip("-").isdigit():
            code = int(r.stdout.strip())
            break
        if time.monotonic() > deadline:
            raise StepError(f"{what}: still running after {timeout_s} s (log: {files.log})")
        time.sleep(poll_s)
    if code != 0:
        tail = ctx.run(f"tail -n 30 {shlex.quote(files.log)}")
        note = " (killed by its timeout)" if code in (124, 137) else ""
        raise StepError(f"{what}{note}; full log on the host: {files.log}",
                        CmdResult(name, code, tail.stdout, ""))
    return files.log
