"""The API key never leaks: a whole load and its report with a unique key in $KYUTAI_API_KEY, and the key is in no
process output, server log, run-directory file or process command line (`ps`, sampled during the run).

The "provisioned" case deploys the server over real SSH first (`yapbench run --provision`, the reference server
standing in for moshi-server on this machine): its remote commands run here, so `ps` sees them too, and the remote
files other than the server's own config (which must hold the key, mode 0600) are checked. The wire-level check of
every command string paramiko sends is tests/test_provision_sshd.py::test_up_uploads_key_safely_starts_and_waits_ready.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from provision import api
from provision.credentials import Secrets
from provision.executor import SshOptions
from test_locust_runs import REPO
from test_reliability_faults import outcomes

pytest_plugins = ["provision_sshd"]
SERVER_COMMAND = f"{sys.executable} -m yapbench.cli serve --config {{config}} --port {{port}} --addr {{addr}}"


class PsSampler:
    """`ps -eo args` of the whole machine, every 50 ms, while the block runs."""

    def __init__(self) -> None:
        self.snapshots: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(0.05):
            self.snapshots.append(subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout)

    def __enter__(self) -> "PsSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def files_holding(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def inventory(sshd, tmp_path: Path) -> Path:
    path = tmp_path / "hosts.toml"
    path.write_text(f"""[defaults]
key_file = "{sshd.key_file}"
tmux_socket = "{sshd.tmux_socket}"
server_command = "{SERVER_COMMAND}"
ready_timeout = 30

[[hosts]]
address = "root@127.0.0.1:{sshd.port}"
port = {sshd.free_port(1)}
addr = "127.0.0.1"
gpus = 1
base_dir = "{tmp_path / 'remote'}"
""")
    return path


@pytest.mark.parametrize("target,auth", [("reference", "header"), ("reference", "query"), ("embedded", "header"),
                                         ("provisioned", "header")])
def test_the_key_appears_in_no_log_report_file_or_command_line(target, auth, ref_server, request, tmp_path):
    key = "yb-secret-" + secrets.token_hex(16)
    env = {**os.environ, "KYUTAI_API_KEY": key}
    run_dir = tmp_path / "run"
    server = ref_server(step_ms=1, event_log=True, api_key=key) if target == "reference" else None
    cmd = [sys.executable, "-m", "yapbench.cli", "run", "-u", "3", "-r", "3", "-t", "4s", "--think-time", "0.1",
           "--samples", "real/en_ljspeech_LJ002-00*", "--speed", "4", "--auth", auth, "--run-dir", str(run_dir)]
    if server is not None:
        cmd += ["--host", server.url]
    elif target == "provisioned":
        sshd = request.getfixturevalue("sshd")
        hosts = inventory(sshd, tmp_path)
        cmd += ["--provision", str(hosts), "--known-hosts", sshd.known_hosts]
        request.addfinalizer(lambda: api.stop(str(hosts), ssh=SshOptions(known_hosts=sshd.known_hosts),
                                              secrets=Secrets(api_key=key)))
    else:
        cmd += ["--server-batch-size", "8"]
    with PsSampler() as ps:
        load = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=REPO, env=env)
    report = subprocess.run([sys.executable, "-m", "yapbench.cli", "report", str(run_dir)], capture_output=True,
                            text=True, timeout=120, cwd=REPO)
    assert load.returncode == 0 and report.returncode == 0, load.stderr[-3000:] + report.stderr[-3000:]
    got = outcomes(run_dir)
    assert got["ok"] >= 3 and set(got) <= {"ok", "cancelled"}, got  # the key was sent, and accepted
    assert (run_dir / "report.html").exists() and (run_dir / "summary.json").exists()

    assert ps.snapshots and not [s for s in ps.snapshots if key in s]
    for text in (load.stdout, load.stderr, report.stdout, report.stderr):
        assert key not in text
    assert files_holding(run_dir, key) == []
    if server is not None:
        server.stop()
        assert server.log_text() and server.event_log.stat().st_size > 0
        assert files_holding(server.workdir, key) == []
    if target == "provisioned":
        remote = tmp_path / "remote"
        [config] = remote.glob("instances/*/config.toml")
        assert files_holding(remote, key) == [config] and config.stat().st_mode & 0o777 == 0o600  # authorized_ids
        assert key not in sshd.log.read_text(errors="replace")
