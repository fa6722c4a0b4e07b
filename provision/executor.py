"""The thin seam between provisioning logic and SSH: run a command, upload bytes, open a tunnel.

Steps only ever talk to an `Executor`; `FabricExecutor` is the real one (one Fabric Connection per host and
thread), tests substitute a fake that answers from a table. Nothing here knows about steps.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, TextIO

from .inventory import HostSpec, local_path

DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class CmdResult:
    command: str
    exited: int
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exited == 0 and not self.timed_out

    def tail(self, n: int = 10) -> str:
        """The last lines worth showing when this command failed: stderr if it said anything, else stdout."""
        text = self.stderr.strip() or self.stdout.strip()
        lines = text.splitlines()[-n:]
        prefix = f"timed out: {self.command}" if self.timed_out else f"exit {self.exited}: {self.command}"
        return "\n".join([prefix, *lines])


class Executor(Protocol):
    """One host's remote side. `sudo=True` means "as root via sudo"; callers that are root pass False."""

    def run(self, command: str, *, sudo: bool = False, timeout: float | None = DEFAULT_TIMEOUT) -> CmdResult: ...

    def put(self, data: bytes, path: str) -> None: ...

    def open_channel(self, host: str, port: int, timeout: float) -> Any:
        """A socket-like stream to host:port as seen from the remote machine (an SSH direct-tcpip channel)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class SshOptions:
    known_hosts: str | None = None  # None: ~/.ssh/known_hosts (and /etc/ssh/ssh_known_hosts)
    accept_new_host_keys: bool = False  # a *changed* key is refused either way (paramiko BadHostKeyException)
    connect_timeout: int = 15
    sudo_password: str | None = field(default=None, repr=False)
    keepalive_s: int = 30  # quiet cargo builds and apt downloads must not look idle to a NAT


class FabricExecutor:
    """Executor over one `fabric.Connection`; records every command string it sends (for audits and tests)."""

    def __init__(self, conn: Any, redact: Callable[[str], str] = lambda s: s, log: TextIO | None = None):
        self.conn = conn
        self.redact = redact
        self.log = log
        self.sent: list[str] = []

    def run(self, command: str, *, sudo: bool = False, timeout: float | None = DEFAULT_TIMEOUT) -> CmdResult:
        from invoke.exceptions import CommandTimedOut

        self.sent.append(command)
        method = self.conn.sudo if sudo else self.conn.run
        try:
            r = method(command, hide=True, warn=True, in_stream=False, timeout=timeout)
            result = CmdResult(command, r.exited, r.stdout, r.stderr)
        except CommandTimedOut as exc:
            # with pty=False the remote process outlives this; callers wrap long work in a remote `timeout`
            r = exc.result
            result = CmdResult(command, -1, r.stdout, r.stderr, timed_out=True)
        self._log(result)
        return result

    def put(self, data: bytes, path: str) -> None:
        self.sent.append(f"<sftp put {len(data)} bytes to {path}>")
        self.conn.put(io.BytesIO(data), remote=path)
        if self.log:
            self.log.write(f"$ <upload {len(data)} bytes> {path}\n")

    def open_channel(self, host: str, port: int, timeout: float) -> Any:
        self.conn.open()
        return self.conn.transport.open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=timeout)

    def close(self) -> None:
        self.conn.close()
        if self.log:
            self.log.close()

    def _log(self, r: CmdResult) -> None:
        if not self.log:
            return
        timeout = " timeout" if r.timed_out else ""
        self.log.write(self.redact(f"$ {r.command}\n{r.stdout}{r.stderr}[exit {r.exited}{timeout}]\n"))
        self.log.flush()


def connect(host: HostSpec, opts: SshOptions, redact: Callable[[str], str] = lambda s: s,
            log: TextIO | None = None) -> FabricExecutor:
    """Open (and authenticate) an SSH connection with host-key verification; raises paramiko/socket errors."""
    import os

    from fabric import Config, Connection
    from paramiko import AutoAddPolicy, RejectPolicy

    overrides: dict[str, Any] = {"run": {"hide": True, "warn": True, "in_stream": False}}
    if opts.sudo_password:
        overrides["sudo"] = {"password": opts.sudo_password}
    connect_kwargs: dict[str, Any] = {}
    if host.key_file:
        connect_kwargs.update(key_filename=local_path(host.key_file), look_for_keys=False)
    conn = Connection(host.hostname, user=host.user, port=host.ssh_port, config=Config(overrides=overrides),
                      connect_timeout=opts.connect_timeout, connect_kwargs=connect_kwargs)
    # Fabric installs AutoAddPolicy and loads no known_hosts at all: pin keys ourselves, before the first command.
    client = conn.client
    if opts.known_hosts:
        client.load_system_host_keys(local_path(opts.known_hosts))
    else:
        client.load_system_host_keys()
        if os.path.exists("/etc/ssh/ssh_known_hosts"):
            client.load_system_host_keys("/etc/ssh/ssh_known_hosts")
    client.set_missing_host_key_policy(AutoAddPolicy() if opts.accept_new_host_keys else RejectPolicy())
    conn.open()
    conn.transport.set_keepalive(opts.keepalive_s)
    return FabricExecutor(conn, redact=redact, log=log)


def describe_connect_error(exc: BaseException) -> str:
    """One line a user can act on, for the host's row in the recap."""
    import socket

    from paramiko import AuthenticationException, BadHostKeyException, SSHException
    from paramiko.ssh_exception import NoValidConnectionsError

    if isinstance(exc, NoValidConnectionsError):
        return f"unreachable: nothing accepts SSH connections there ({exc.strerror or exc})"
    if isinstance(exc, BadHostKeyException):
        return f"host key CHANGED for {exc.hostname}: refusing to connect (check known_hosts)"
    if isinstance(exc, AuthenticationException):
        return f"authentication failed ({exc}); check user and key_file"
    if isinstance(exc, SSHException) and "not found in known_hosts" in str(exc):
        return f"unknown host key ({exc}); add it to known_hosts or pass --accept-new-host-keys"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "unreachable: connection timed out"
    if isinstance(exc, socket.gaierror):
        return f"unreachable: cannot resolve host name ({exc})"
    return f"connection failed: {type(exc).__name__}: {exc}"
