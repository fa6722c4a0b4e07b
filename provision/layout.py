"""Where things live on a host, and which server instances (one per GPU) it runs."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from yapbench.errors import UserError
from yapbench.protocol import DEFAULT_PATH

from .facts import Gpu
from .inventory import HostSpec


def expand_home(path: str, home: str) -> str:
    return home + path[1:] if path == "~" or path.startswith("~/") else path


@dataclass(frozen=True)
class Layout:
    base: str
    hf_home: str
    cargo_home: str
    cuda_home: str

    @property
    def state_path(self) -> str:
        return f"{self.base}/state.json"

    @property
    def jobs_dir(self) -> str:
        return f"{self.base}/jobs"

    @property
    def bin_dir(self) -> str:
        return f"{self.base}/bin"

    @property
    def instances_dir(self) -> str:
        return f"{self.base}/instances"

    @property
    def cargo(self) -> str:
        return f"{self.cargo_home}/bin/cargo"

    @property
    def build_path(self) -> str:
        """PATH for builds: the 12.4 nvcc must win over any other toolkit (cudarc reads `nvcc --version`)."""
        return f"{self.cuda_home}/bin:{self.cargo_home}/bin:$PATH"


def make_layout(host: HostSpec, home: str) -> Layout:
    base = posixpath.normpath(expand_home(host.base_dir, home))
    return Layout(
        base=base,
        hf_home=expand_home(host.hf_home, home) if host.hf_home else f"{base}/hf_cache",
        cargo_home=expand_home(host.cargo_home, home),
        cuda_home=host.cuda_home,
    )


@dataclass(frozen=True)
class Instance:
    """One server process: its GPU (None: leave CUDA_VISIBLE_DEVICES alone), port, tmux session and files."""

    index: int
    gpu: int | None
    port: int
    session: str
    dir: str

    @property
    def config_path(self) -> str:
        return f"{self.dir}/config.toml"

    @property
    def launcher_path(self) -> str:
        return f"{self.dir}/start.sh"

    @property
    def log_path(self) -> str:
        return f"{self.dir}/server.log"

    @property
    def log_dir(self) -> str:
        """The server's own daily-rolling logs (config `log_dir`)."""
        return f"{self.dir}/logs"


def select_gpus(host: HostSpec, detected: tuple[Gpu, ...]) -> list[int | None]:
    """Indices to run on. Without GPUs (a stand-in server) there is one instance and no CUDA_VISIBLE_DEVICES."""
    available: list[int | None] = [g.index for g in detected]
    spec = host.gpus
    if not available:
        if host.builds_server:
            raise UserError(f"{host.name}: no GPU found by nvidia-smi")
        count = spec if isinstance(spec, int) else len(spec) if isinstance(spec, list) else 1
        return [None] * count
    if spec == "all":
        return available
    if isinstance(spec, int):
        if spec > len(available):
            raise UserError(f"{host.name}: gpus = {spec} but only {len(available)} GPU(s) found")
        return available[:spec]
    assert isinstance(spec, list)  # "all" and a count are answered above
    missing = [i for i in spec if i not in available]
    if missing:
        raise UserError(f"{host.name}: GPU index {missing} not present (found {available})")
    return list(spec)


def make_instances(host: HostSpec, layout: Layout, gpus: list[int | None]) -> list[Instance]:
    out = []
    for i, gpu in enumerate(gpus):
        port = host.port + i
        # the first keeps the plain session name the single-GPU docs and habits use
        session = host.session if i == 0 else f"{host.session}-{i}"
        out.append(Instance(i, gpu, port, session, f"{layout.instances_dir}/{port}"))
    return out


def ws_url(host: HostSpec, instance: Instance) -> str:
    return f"ws://{host.public_host}:{instance.port}{DEFAULT_PATH}"
