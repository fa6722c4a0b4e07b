"""A private OpenSSH server on 127.0.0.1 for the provision tests (pytest plugin; load with `pytest_plugins`).

Keys are generated per session, the client key is authorized for root, and a known_hosts file pins the host
key, so host-key verification runs for real. Skips when sshd is not installed (`make test` installs it).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd")


@dataclass(frozen=True)
class Sshd:
    port: int
    key_file: str
    known_hosts: str  # pins this server's host key
    dir: Path
    log: Path
    tmux_socket: str  # a private tmux server, so tests never touch the user's sessions

    @property
    def address(self) -> str:
        return f"root@127.0.0.1:{self.port}"

    @staticmethod
    def free_port(count: int = 1) -> int:
        return free_port(count)


def free_port(count: int = 1) -> int:
    """A port p with p .. p+count-1 all free right now (multi-GPU hosts use consecutive ports)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            first = s.getsockname()[1]
        try:
            for port in range(first + 1, first + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
    raise RuntimeError(f"no {count} consecutive free ports")


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd not listening after {timeout} s: {log.read_text()}")


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    binary = next((p for p in SSHD_CANDIDATES if os.access(p, os.X_OK)), shutil.which("sshd"))
    if not binary or not shutil.which("ssh-keygen") or not shutil.which("tmux"):
        pytest.skip("needs openssh-server and tmux (make test installs them)")
    if os.geteuid() != 0:
        pytest.skip("the private sshd logs in as root: run the tests as root (as make test in CI does)")
    d = tmp_path_factory.mktemp("sshd")
    os.chmod(d, 0o755)
    _keygen(d / "hostkey")
    _keygen(d / "clientkey")
    shutil.copy(d / "clientkey.pub", d / "authorized_keys")
    port = free_port()
    cfg = d / "sshd_config"
    cfg.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/hostkey\nAuthorizedKeysFile {d}/authorized_keys\n"
        f"PidFile {d}/sshd.pid\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nStrictModes no\nUsePAM no\n"
        "Subsystem sftp internal-sftp\nMaxSessions 64\nMaxStartups 64\n"
    )
    os.makedirs("/run/sshd", exist_ok=True)  # privilege separation directory sshd insists on
    subprocess.run([binary, "-t", "-f", str(cfg)], check=True)
    log = d / "sshd.log"
    proc = subprocess.Popen([binary, "-D", "-f", str(cfg), "-E", str(log)])
    known = d / "known_hosts"
    key_type, key_b64 = (d / "hostkey.pub").read_text().split()[:2]
    known.write_text(f"[127.0.0.1]:{port} {key_type} {key_b64}\n")
    tmux_socket = f"yapbench-test-{os.getpid()}"
    try:
        _wait_port(port, proc, log)
        yield Sshd(port, str(d / "clientkey"), str(known), d, log, tmux_socket)
    finally:
        subprocess.run(["tmux", "-L", tmux_socket, "kill-server"], capture_output=True)
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
