"""Per-host working state shared by the steps of one run: executor, facts, layout, the remote state file."""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .credentials import Secrets
from .executor import DEFAULT_TIMEOUT, CmdResult, Executor
from .facts import Facts, gather
from .inventory import HostSpec
from .layout import Instance, Layout, make_instances, make_layout, select_gpus

STATE_VERSION = 1


class StepError(Exception):
    """A step could not reach its state; `detail` is the message plus the failing command's tail."""

    def __init__(self, message: str, result: CmdResult | None = None):
        super().__init__(message)
        self.result = result

    @property
    def detail(self) -> str:
        return f"{self}\n{self.result.tail()}" if self.result else str(self)


def sha256(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


@dataclass
class Context:
    host: HostSpec
    ex: Executor
    secrets: Secrets
    plan: bool = False  # probes only: report what would change
    changed: set[str] = field(default_factory=set)  # ids of steps that changed something in this run
    info: dict[str, Any] = field(default_factory=dict)  # what status-like steps report (JSON-able)

    # --- running commands -----------------------------------------------------------------------------------

    def run(self, command: str, *, root: bool = False, timeout: float | None = DEFAULT_TIMEOUT) -> CmdResult:
        """Run as the login user, or as root (`root=True`) through sudo unless we already are root."""
        use_sudo = root and not self.facts.is_root
        if self.host.path_prefix:
            path = ":".join(self.host.path_prefix) + ":$PATH"
            # sudo resets PATH (secure_path), so hand it over explicitly; $PATH expands in the login shell
            command = (f'env PATH="{path}" bash -c {shlex.quote(command)}' if use_sudo
                       else f'export PATH="{path}"; {command}')
        return self.ex.run(command, sudo=use_sudo, timeout=timeout)

    def must(self, command: str, what: str, *, root: bool = False,
             timeout: float | None = DEFAULT_TIMEOUT) -> CmdResult:
        r = self.run(command, root=root, timeout=timeout)
        if not r.ok:
            raise StepError(what, r)
        return r

    def run_long(self, command: str, what: str, *, timeout_s: int, root: bool = False) -> CmdResult:
        """A long command bounded on the remote side too: a local timeout alone leaves it running there."""
        wrapped = f"timeout -k 30 {timeout_s} bash -c {shlex.quote(command)}"
        return self.must(wrapped, what, root=root, timeout=timeout_s + 60)

    def put_file(self, data: bytes, path: str, mode: str) -> None:
        """Upload to a temp file created with `mode` first (never world-readable, even briefly), then rename."""
        tmp = f"{path}.tmp"
        q = shlex.quote
        self.must(f"mkdir -p {q(path.rsplit('/', 1)[0])} && install -m {mode} /dev/null {q(tmp)}",
                  f"cannot create {tmp}")
        self.ex.put(data, tmp)
        self.must(f"mv -f {q(tmp)} {q(path)}", f"cannot install {path}")

    def remote_sha256(self, path: str) -> str | None:
        r = self.run(f"sha256sum {shlex.quote(path)} 2>/dev/null")
        return r.stdout.split()[0] if r.ok and r.stdout.strip() else None

    # --- facts and layout (gathered lazily, once) -----------------------------------------------------------

    @cached_property
    def facts(self) -> Facts:
        return gather(lambda cmd: self.run(cmd))

    @cached_property
    def layout(self) -> Layout:
        return make_layout(self.host, self.facts.home)

    @cached_property
    def instances(self) -> list[Instance]:
        return make_instances(self.host, self.layout, select_gpus(self.host, self.facts.gpus))

    # --- the state file: what provision installed and started here ------------------------------------------

    @cached_property
    def state(self) -> dict[str, Any]:
        r = self.run(f"cat {shlex.quote(self.layout.state_path)} 2>/dev/null")
        if not r.ok or not r.stdout.strip():
            return {"version": STATE_VERSION, "installed": {}, "instances": {}}
        try:
            data = json.loads(r.stdout)
        except json.JSONDecodeError:
            raise StepError(f"{self.layout.state_path} is not JSON; move it away and rerun") from None
        data.setdefault("installed", {})
        data.setdefault("instances", {})
        return data

    def save_state(self) -> None:
        self.put_file(json.dumps(self.state, indent=2, sort_keys=True).encode() + b"\n",
                      self.layout.state_path, "600")

    def mark_installed(self, item: str, value: Any = True) -> None:
        self.state["installed"][item] = value
        self.save_state()
