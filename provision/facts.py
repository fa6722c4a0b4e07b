"""Read-only facts about a host, gathered once per connection: OS, privileges, tools, GPUs, driver."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from .executor import CmdResult

# One round trip for the scalar facts; each line is key=value.
FACTS_COMMAND = (
    "printf 'home=%s\\n' \"$HOME\"; printf 'uid=%s\\n' \"$(id -u)\"; printf 'arch=%s\\n' \"$(uname -m)\"; "
    "(. /etc/os-release 2>/dev/null; printf 'os_id=%s\\nos_version=%s\\n' \"$ID\" \"$VERSION_ID\"); "
    "for t in sudo tmux nvidia-smi ss curl python3; do printf 'which_%s=%s\\n' \"$t\" \"$(command -v $t)\"; done"
)
GPU_QUERY = "nvidia-smi --query-gpu=index,name,compute_cap,memory.total --format=csv,noheader,nounits"


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    compute_cap: str  # "89", as CUDA_COMPUTE_CAP wants it
    memory_mib: int


@dataclass(frozen=True)
class Facts:
    home: str
    uid: int
    arch: str
    os_id: str
    os_version: str
    tools: dict[str, str]  # tool name -> path, present tools only
    driver_cuda: str | None  # "CUDA Version" from the nvidia-smi header
    gpus: tuple[Gpu, ...]

    @property
    def is_root(self) -> bool:
        return self.uid == 0

    def has(self, tool: str) -> bool:
        return tool in self.tools


def parse_kv(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def parse_driver_cuda(nvidia_smi_header: str) -> str | None:
    m = re.search(r"CUDA Version:\s*([0-9]+\.[0-9]+)", nvidia_smi_header)
    return m.group(1) if m else None


def parse_gpus(csv: str) -> tuple[Gpu, ...]:
    gpus = []
    for line in csv.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4 or not parts[0].isdigit():
            continue
        mem = parts[3] if parts[3].isdigit() else "0"
        gpus.append(Gpu(int(parts[0]), parts[1], parts[2].replace(".", ""), int(mem)))
    return tuple(gpus)


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v))


def gather(run: Callable[[str], CmdResult]) -> Facts:
    kv = parse_kv(run(FACTS_COMMAND).stdout)
    tools = {k.removeprefix("which_"): v for k, v in kv.items() if k.startswith("which_") and v}
    driver_cuda: str | None = None
    gpus: tuple[Gpu, ...] = ()
    if "nvidia-smi" in tools:
        driver_cuda = parse_driver_cuda(run("nvidia-smi").stdout)
        gpus = parse_gpus(run(GPU_QUERY).stdout)
    uid = kv.get("uid", "")
    return Facts(
        home=kv.get("home", ""),
        uid=int(uid) if uid.isdigit() else -1,
        arch=kv.get("arch", ""),
        os_id=kv.get("os_id", ""),
        os_version=kv.get("os_version", ""),
        tools=tools,
        driver_cuda=driver_cuda,
        gpus=gpus,
    )
