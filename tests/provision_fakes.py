"""A fake Executor for provision's unit tests: answers commands from a regex table, records what was sent."""

from __future__ import annotations

import re
from typing import Callable, Union

from provision.context import Context
from provision.credentials import Secrets
from provision.executor import CmdResult
from provision.inventory import HostSpec

Answer = Union[tuple[int, str], tuple[int, str, str], Callable[[str], tuple]]

NVIDIA_SMI_HEADER = ("| NVIDIA-SMI 550.54.14              Driver Version: 550.54.14      CUDA Version: 12.4     |\n")
GPUS_CSV = "0, NVIDIA H100 80GB HBM3, 9.0, 81559\n1, NVIDIA L40S, 8.9, 46068\n"


def facts_output(**kw: str) -> str:
    facts = {"home": "/home/ubuntu", "uid": "1000", "arch": "x86_64", "os_id": "ubuntu", "os_version": "22.04",
             "which_sudo": "/usr/bin/sudo", "which_tmux": "/usr/bin/tmux", "which_nvidia-smi": "/usr/bin/nvidia-smi",
             "which_ss": "/usr/bin/ss", "which_curl": "/usr/bin/curl", "which_python3": "/usr/bin/python3"}
    facts.update(kw)
    return "".join(f"{k}={v}\n" for k, v in facts.items())


def gpu_host_rules(**facts: str) -> list[tuple[str, Answer]]:
    """An Ubuntu 22.04 host with two GPUs, driver 550 (CUDA 12.4), sudo without password, 200 GB free."""
    return [
        (r"^printf 'home=", (0, facts_output(**facts))),
        (r"^nvidia-smi$", (0, NVIDIA_SMI_HEADER)),
        (r"^nvidia-smi --query-gpu=index,name,compute_cap", (0, GPUS_CSV)),
        (r"^sudo -n true$", (0, "")),
        (r'^df -Pk "\$HOME"', (0, "/dev/sda1 500000000 100000000 209715200 33% /\n")),
    ]


class FakeExecutor:
    def __init__(self, rules: list[tuple[str, Answer]]):
        self.rules = [(re.compile(p), a) for p, a in rules]
        self.log: list[tuple[str, bool]] = []  # (command, sudo)
        self.files: dict[str, bytes] = {}

    def prepend(self, pattern: str, answer: Answer) -> None:
        self.rules.insert(0, (re.compile(pattern), answer))

    def run(self, command: str, *, sudo: bool = False, timeout: float | None = None) -> CmdResult:
        self.log.append((command, sudo))
        for rx, answer in self.rules:
            if rx.search(command):
                got = answer(command) if callable(answer) else answer
                return CmdResult(command, got[0], got[1], got[2] if len(got) > 2 else "")
        return CmdResult(command, 1, "", "fake: no rule")  # like a missing file or tool

    def put(self, data: bytes, path: str) -> None:
        self.files[path] = data

    def open_channel(self, host: str, port: int, timeout: float):
        raise OSError("no tunnels in unit tests")

    def close(self) -> None:
        pass

    def commands(self) -> list[str]:
        return [c for c, _ in self.log]

    def ran(self, pattern: str) -> list[str]:
        return [c for c in self.commands() if re.search(pattern, c)]


def make_ctx(rules: list[tuple[str, Answer]] | None = None, plan: bool = False, api_key: str = "k-123",
             **host: object) -> tuple[Context, FakeExecutor]:
    ex = FakeExecutor(rules if rules is not None else gpu_host_rules())
    spec = HostSpec(**{"hostname": "gpu1", "user": "ubuntu", **host})  # type: ignore[arg-type]
    return Context(spec, ex, Secrets(api_key=api_key), plan=plan), ex
