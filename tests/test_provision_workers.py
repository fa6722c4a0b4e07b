"""`yapbench provision workers` for real: over the loopback sshd it ships this checkout, installs it, starts a Locust
worker in tmux; the worker joins a local master and streams to a local reference server, and the master's run
directory holds its records."""

from __future__ import annotations

import json
import os
import secrets as pysecrets
import subprocess
import sys
import sysconfig
from collections import Counter
from pathlib import Path

import pytest
from test_locust_runs import REPO, client_counts, locust_cmd, server_counts

from provision import api, workers
from provision.credentials import Secrets
from provision.executor import SshOptions
from provision.inventory import HostSpec
from provision.runner import Status

pytest_plugins = ["provision_sshd"]
pytestmark = pytest.mark.sshd


def prepared_venv(path: Path) -> None:
    """The load host's venv, made beforehand with yapbench's dependencies reachable (a `.pth` line to this test's
    own site-packages), as on a host image that has them: `provision workers` then installs only yapbench itself,
    so the test needs no download of the whole dependency tree."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=120)
    site = next(path.glob("lib/python3*/site-packages"))
    (site / "yapbench-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")


def test_remote_worker_streams_for_a_local_master_and_its_records_reach_the_master(ref_server, sshd, tmp_path):
    key = "yb-" + pysecrets.token_hex(12)
    server = ref_server(batch_size=8, step_ms=1, event_log=True, api_key=key)
    base = tmp_path / "loadhost"
    prepared_venv(base / "venv")
    host = HostSpec(hostname="127.0.0.1", user="root", ssh_port=sshd.port, key_file=sshd.key_file,
                    base_dir=str(base), tmux_socket=sshd.tmux_socket, python=sys.executable)
    opts = {"ssh": SshOptions(known_hosts=sshd.known_hosts), "secrets": Secrets(api_key=key)}
    master_port = sshd.free_port()
    run_dir = tmp_path / "run"
    master = subprocess.Popen(
        locust_cmd(server.url, run_dir, "--master", "--expect-workers", "1", "--master-bind-host", "127.0.0.1",
                   "--master-bind-port", str(master_port), users=3, run_time="10s"),
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "KYUTAI_API_KEY": key})
    try:
        [up] = api.execute([host], workers.up_steps("127.0.0.1", master_port), **opts)
        assert up.ok, (up.error, [(s.step, s.status, s.message) for s in up.steps])
        assert {s.step: s.status for s in up.steps}["worker"] == Status.CHANGED
        state = json.loads((base / "state.json").read_text())
        worker_pid = state["workers"]["process"]["pid"]
        _, stderr = master.communicate(timeout=180)
    finally:
        if master.poll() is None:
            master.kill()
            master.wait()
        [down] = api.execute([host], workers.stop_steps, **opts)
    assert down.ok, down.error
    assert master.returncode == 0, stderr[-3000:]

    got = client_counts(run_dir)
    by_worker = Counter(s["worker"] for s in got["sessions"])
    assert len(by_worker) == 1 and next(iter(by_worker)).endswith(f":{worker_pid}")  # the worker tmux runs
    assert got["outcomes"]["ok"] >= 3 and set(got["outcomes"]) <= {"ok", "cancelled"}, got["outcomes"]
    server.stop()
    seen = server_counts(server.event_log)
    assert seen["accepted"] == len(got["sessions"]) and seen["rejected"] == 0  # every session it opened is recorded
    assert got["words"] == seen["words"] > 0  # and every word the server sent it
    log = (base / "worker.log").read_text()
    assert key not in log and key not in stderr
    tmux = subprocess.run(["tmux", "-L", sshd.tmux_socket, "has-session", "-t", "=" + workers.SESSION],
                          capture_output=True)
    assert tmux.returncode != 0
