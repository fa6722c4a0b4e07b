"""The per-instance launcher script tmux runs: sets every variable itself (non-interactive shells read no
.bashrc, and new tmux sessions inherit the tmux server's old environment), then `exec`s the server so the pane
pid is the server pid. It names the config file, never the key."""

from __future__ import annotations

import shlex

from .inventory import HostSpec
from .layout import Instance, Layout


def server_command(host: HostSpec, binary: str | None, inst: Instance) -> str:
    q = shlex.quote
    if host.server_command:
        return host.server_command.format(config=q(inst.config_path), port=inst.port, addr=q(host.addr))
    assert binary is not None
    return f"{q(binary)} worker --config {q(inst.config_path)} --addr {q(host.addr)} --port {inst.port}"


def render(host: HostSpec, layout: Layout, inst: Instance, binary: str | None) -> str:
    q = shlex.quote
    lines = [
        "#!/usr/bin/env bash",
        f"# written by yapbench provision: STT server instance on port {inst.port}; logs in {inst.log_path}",
        "set -e",
    ]
    if host.builds_server:
        lines += [
            f'export PATH="{layout.cuda_home}/bin:{layout.cargo_home}/bin:$PATH"',
            # the binary loads libcudart/cublas/nvrtc and (pyo3) libpython at run time
            f"export LD_LIBRARY_PATH=\"{layout.cuda_home}/lib64:$(python3 -c 'import sysconfig; "
            "print(sysconfig.get_config_var(\"LIBDIR\"))')${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}\"",
        ]
    lines.append(f"export HF_HOME={q(layout.hf_home)}")
    if inst.gpu is not None:
        lines.append(f"export CUDA_VISIBLE_DEVICES={inst.gpu}")  # the server always uses device 0
    lines += [
        f"mkdir -p {q(inst.log_dir)} {q(layout.hf_home)}",
        f"cd {q(inst.dir)}",
        f"exec {server_command(host, binary, inst)} >> {q(inst.log_path)} 2>&1",
    ]
    return "\n".join(lines) + "\n"
