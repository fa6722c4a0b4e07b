"""Server processes on a host: tmux sessions, their pids, and stopping them by recorded pid (never pkill -f)."""

from __future__ import annotations

import shlex
import time

from .context import Context

STOP_WAIT_S = 15.0


def tmux(ctx: Context) -> str:
    sock = ctx.host.tmux_socket
    return f"tmux -L {shlex.quote(sock)}" if sock else "tmux"


def pane_pid(ctx: Context, session: str) -> int | None:
    """The server's pid (the launcher `exec`s it, so it is the pane process), None if the session is gone."""
    target = shlex.quote("=" + session + ":")
    r = ctx.run(f"{tmux(ctx)} list-panes -t {target} -F '#{{pane_pid}} #{{pane_dead}}' 2>/dev/null")
    for line in r.stdout.splitlines():
        pid, _, dead = line.partition(" ")
        if pid.isdigit() and dead.strip() != "1":
            return int(pid)
    return None


def starttime(ctx: Context, pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: with the pid it identifies one process, so a reused pid is never killed."""
    r = ctx.run(f"cat /proc/{pid}/stat 2>/dev/null")
    fields = r.stdout.rpartition(")")[2].split()  # the command name in parentheses may contain spaces
    return fields[19] if r.ok and len(fields) > 19 else None


def start(ctx: Context, session: str, launcher: str) -> tuple[int | None, str | None]:
    ctx.must(f"{tmux(ctx)} new-session -d -s {shlex.quote(session)} {shlex.quote(launcher)}",
             f"cannot start tmux session {session}")
    pid = pane_pid(ctx, session)
    return pid, (starttime(ctx, pid) if pid else None)


def _same_process(ctx: Context, pid: int, recorded_start: str | None) -> bool:
    current = starttime(ctx, pid)
    return current is not None and (recorded_start is None or current == recorded_start)


def stop(ctx: Context, session: str, record: dict | None) -> str:
    """Kill the tmux session, then make sure the recorded process is gone (TERM, then KILL after a grace period)."""
    notes = []
    if ctx.run(f"{tmux(ctx)} kill-session -t {shlex.quote('=' + session)} 2>/dev/null").ok:
        notes.append(f"killed tmux session {session}")
    record = record or {}
    pid = record.get("pid")
    if pid and _same_process(ctx, pid, record.get("starttime")):
        ctx.run(f"kill -TERM {int(pid)} 2>/dev/null")
        deadline = time.monotonic() + STOP_WAIT_S
        while _same_process(ctx, pid, record.get("starttime")) and time.monotonic() < deadline:
            time.sleep(0.3)
        if _same_process(ctx, pid, record.get("starttime")):
            ctx.run(f"kill -KILL {int(pid)} 2>/dev/null")
            notes.append(f"pid {pid} needed SIGKILL")
        else:
            notes.append(f"pid {pid} exited")
    return "; ".join(notes) or f"{session} was not running"


def port_listening(ctx: Context, port: int) -> bool | None:
    """None when `ss` is missing (status then says unknown rather than guessing)."""
    if not ctx.facts.has("ss"):
        return None
    return bool(ctx.run(f"ss -Hltn 'sport = :{int(port)}'").stdout.strip())
