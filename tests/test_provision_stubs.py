"""CUDA, Rust and build steps on the real sshd host with stub tools on PATH (no GPU, no downloads).

The stubs print canned outputs and append every invocation (with the env that matters) to a log, so the
tests see what provision would run, and that `plan` runs none of it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from provision import api
from provision.credentials import Secrets
from provision.executor import SshOptions
from provision.inventory import HostSpec
from provision.runner import Status
from provision.steps.build import BuildServer
from provision.steps.toolchain import CudaToolkit, Rust

pytest_plugins = ["provision_sshd"]
pytestmark = pytest.mark.sshd

RECORD = 'echo "$(basename "$0") $* | CAP=${CUDA_COMPUTE_CAP:-} PATH0=${PATH%%:*}" >> "$STUB_LOG"\n'
STUBS = {
    "nvidia-smi": """case "$*" in
  *index,name,compute_cap*) echo "0, NVIDIA L40S, 8.9, 46068" ;;
  *memory.used*) echo "0, NVIDIA L40S, 1200, 46068, 3" ;;
  *) echo "| NVIDIA-SMI 550.54.14   Driver Version: 550.54.14   CUDA Version: 12.4 |" ;;
esac""",
    "dpkg-query": 'printf "ii  tmux\\nii  curl\\n"',
    "apt-get": "exit 0",
}
CARGO = """case "$1" in
  --version) echo "cargo 1.89.0 (stub)" ;;
  install) mkdir -p "$CARGO_HOME/bin" && printf '#!/bin/sh\\n' > "$CARGO_HOME/bin/moshi-server" \\
             && chmod +x "$CARGO_HOME/bin/moshi-server"; echo "  Installed package" ;;
esac"""
NVCC = 'echo "Cuda compilation tools, release 12.4, V12.4.131"'


def _script(path: Path, body: str, log: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\nSTUB_LOG={log}\n{RECORD}{body}\n")
    path.chmod(0o755)


@pytest.fixture
def stub_host(sshd, tmp_path) -> tuple[HostSpec, Path]:
    log = tmp_path / "stub.log"
    log.touch()
    for name, body in STUBS.items():
        _script(tmp_path / "stubs" / name, body, log)
    spec = HostSpec(hostname="127.0.0.1", user="root", ssh_port=sshd.port, key_file=sshd.key_file,
                    path_prefix=(str(tmp_path / "stubs"),), cuda_home=str(tmp_path / "cuda-12.4"),
                    cargo_home=str(tmp_path / "cargo"), base_dir=str(tmp_path / "base"), tmux_socket=sshd.tmux_socket)
    return spec, log


def _run(spec, steps, plan, sshd):
    [r] = api.execute([spec], lambda h: steps, plan=plan, ssh=SshOptions(known_hosts=sshd.known_hosts),
                      secrets=Secrets(api_key="k"))
    return r, {s.step: s for s in r.steps}


def test_plan_on_a_bare_host_changes_nothing(stub_host, sshd):
    spec, log = stub_host
    r, by = _run(spec, [CudaToolkit(), Rust(), BuildServer()], True, sshd)
    assert [by[s].status for s in ("cuda", "rust", "build")] == [Status.WOULD_CHANGE] * 3, r.error
    assert "install cuda-toolkit-12-4 (no nvcc" in by["cuda"].message
    assert by["rust"].message.startswith("install Rust with rustup")
    assert "(compute cap 89, CUDA 12.4)" in by["build"].message  # from the stub nvidia-smi
    assert "apt-get" not in log.read_text() and "cargo" not in log.read_text()


def test_build_runs_detached_with_cuda_env_then_is_idempotent(stub_host, sshd, tmp_path):
    spec, log = stub_host
    _script(Path(spec.cuda_home) / "bin" / "nvcc", NVCC, log)
    _script(Path(spec.cargo_home) / "bin" / "cargo", CARGO, log)
    steps = [CudaToolkit(), Rust(), BuildServer(poll_s=0.2)]
    r, by = _run(spec, steps, False, sshd)
    assert (by["cuda"].status, by["rust"].status, by["build"].status) == (Status.OK, Status.OK, Status.CHANGED), r.error
    [install] = [line for line in log.read_text().splitlines() if line.startswith("cargo install")]
    assert install.startswith("cargo install --locked --features cuda moshi-server@0.6.4 |")
    assert f"CAP=89 PATH0={spec.cuda_home}/bin" in install
    r2, by2 = _run(spec, steps, False, sshd)
    assert not r2.changed and "built for compute cap 89" in by2["build"].message
    # another GPU generation: the fingerprint differs, so rebuild (cargo needs --force for the same version)
    r3, by3 = _run(replace(spec, compute_cap="90"), steps, True, sshd)
    assert by3["build"].message.endswith("(changed: compute_cap)")
    _run(replace(spec, compute_cap="90"), steps, False, sshd)
    assert "cargo install --locked --features cuda --force moshi-server@0.6.4 | CAP=90" in log.read_text()


def test_preflight_refuses_a_non_ubuntu_host_before_any_change(stub_host, sshd):
    spec, log = stub_host
    [r] = api.plan([spec], ssh=SshOptions(known_hosts=sshd.known_hosts), secrets=Secrets(api_key="k"))
    by = {s.step: s for s in r.steps}
    os_line = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    if os_line.get("ID") == "ubuntu" and os_line.get("VERSION_ID", "").strip('"') == "22.04":
        pytest.skip("the test machine is itself Ubuntu 22.04")
    assert by["preflight"].status is Status.FAILED and "is not Ubuntu 22.04" in by["preflight"].message
    assert all(by[s].status is Status.SKIPPED
               for s in ("packages", "cuda", "rust", "build", "config", "start", "ready"))
