"""provision against a real OpenSSH server on 127.0.0.1: upload, tmux, readiness, status, stop, clean."""

from __future__ import annotations

import json
import secrets as pysecrets
import stat
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import paramiko
import pytest

from provision import api
from provision.credentials import Secrets
from provision.executor import SshOptions
from provision.inventory import HostSpec
from provision.runner import Status

pytest_plugins = ["provision_sshd"]
pytestmark = pytest.mark.sshd

REPO = Path(__file__).resolve().parents[1]
# yapbench's reference server stands in for moshi-server: same config format, same `worker` flags
SERVER_COMMAND = f"{sys.executable} -m yapbench.cli serve --config {{config}} --port {{port}} --addr {{addr}}"


@pytest.fixture(scope="module")
def key() -> str:
    return "yb-" + pysecrets.token_hex(12)


@pytest.fixture(scope="module")
def host(sshd, tmp_path_factory) -> HostSpec:
    base = tmp_path_factory.mktemp("remote") / "yap-stt"
    return HostSpec(hostname="127.0.0.1", user="root", ssh_port=sshd.port, key_file=sshd.key_file,
                    port=sshd.free_port(2), addr="127.0.0.1", gpus=1, base_dir=str(base), tmux_socket=sshd.tmux_socket,
                    server_command=SERVER_COMMAND, ready_timeout=30)


@pytest.fixture(scope="module")
def opts(sshd, key) -> dict:
    return {"ssh": SshOptions(known_hosts=sshd.known_hosts), "secrets": Secrets(api_key=key)}


class WireSpy:
    """Every command string paramiko sends, and `ps` snapshots of the machine while provision runs."""

    def __init__(self, monkeypatch):
        self.commands: list[str] = []
        self.ps: list[str] = []
        original = paramiko.Channel.exec_command

        def spy(chan, command):
            self.commands.append(command if isinstance(command, str) else command.decode())
            return original(chan, command)

        monkeypatch.setattr(paramiko.Channel, "exec_command", spy)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll_ps, daemon=True)

    def _poll_ps(self) -> None:
        while not self._stop.wait(0.05):
            self.ps.append(subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def statuses(result) -> dict[str, Status]:
    return {s.step: s.status for s in result.steps}


def test_up_uploads_key_safely_starts_and_waits_ready(host, opts, key, sshd, monkeypatch, tmp_path):
    with WireSpy(monkeypatch) as spy:
        [r] = api.up([host], log_dir=tmp_path / "logs", **opts)
    assert r.ok, r.error
    st = statuses(r)
    assert st["connect"] == st["preflight"] == Status.OK
    assert st["packages"] == st["cuda"] == st["rust"] == st["build"] == Status.SKIPPED
    assert st["config"] == st["start"] == Status.CHANGED
    assert st["ready"] == Status.OK
    assert r.targets == [f"ws://127.0.0.1:{host.port}/api/asr-streaming"]

    config = Path(host.base_dir) / "instances" / str(host.port) / "config.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert f'authorized_ids = ["{key}"]' in config.read_text()
    assert stat.S_IMODE((config.parent / "start.sh").stat().st_mode) == 0o700
    # the key travels only inside the uploaded file
    assert spy.commands and not [c for c in spy.commands if key in c]
    assert spy.ps and not [p for p in spy.ps if key in p]
    logs = [*(tmp_path / "logs").iterdir(), config.parent / "server.log", sshd.log]
    assert all(key not in p.read_text() for p in logs)


def test_second_up_changes_nothing(host, opts):
    [r] = api.up([host], **opts)
    assert r.ok, r.error
    assert not r.changed, [(s.step, s.status, s.message) for s in r.steps]
    [p] = api.plan([host], **opts)
    assert not p.changed and p.ok


def test_status_reports_session_port_and_ready(host, opts):
    [r] = api.status([host], **opts)
    assert r.ok, r.error
    [inst] = r.info["instances"]
    assert inst["running"] and inst["session"] == "yap-stt" and inst["port"] == host.port
    assert inst["ready"] == "Ready" and inst["slots"] == "0/64" and inst["listening"] in (True, None)
    assert inst["log_errors"] == 0 and inst["log_tail"]
    assert api.targets([host], **opts) == [f"ws://127.0.0.1:{host.port}/api/asr-streaming"]


def test_cli_status_from_a_toml_inventory(host, sshd, key, tmp_path, monkeypatch, capsys):
    from yapbench.cli import main

    inv = tmp_path / "hosts.toml"
    inv.write_text(f"""[defaults]
key_file = "{sshd.key_file}"
tmux_socket = "{host.tmux_socket}"
server_command = "{host.server_command}"

[[hosts]]
address = "root@127.0.0.1:{sshd.port}"
port = {host.port}
addr = "127.0.0.1"
gpus = 1
base_dir = "{host.base_dir}"
""")
    monkeypatch.setenv("KYUTAI_API_KEY", key)
    code = main(["provision", "status", "--hosts", str(inv), "--known-hosts", sshd.known_hosts, "--json", "-"])
    out = capsys.readouterr()
    assert code == 0, out.err
    report = json.loads(out.out)
    assert report["ok"] and report["hosts"][0]["info"]["instances"][0]["ready"] == "Ready"
    assert key not in out.out + out.err


def test_one_server_per_gpu_and_scaling_back(host, opts):
    two = replace(host, gpus=2)
    [r] = api.up([two], **opts)
    assert r.ok, r.error
    assert r.targets == [f"ws://127.0.0.1:{host.port + i}/api/asr-streaming" for i in range(2)]
    assert "start yap-stt-1 (not running)" in r.steps[-2].message and "yap-stt " not in r.steps[-2].message
    [back] = api.up([host], **opts)
    assert back.ok and "stop yap-stt-1 (no longer wanted)" in back.steps[-2].message


def test_stop_then_clean(host, opts):
    [r] = api.stop([host], **opts)
    assert r.ok and statuses(r)["stop"] == Status.CHANGED, r.error
    tmux = subprocess.run(["tmux", "-L", host.tmux_socket, "has-session", "-t", "=yap-stt"], capture_output=True)
    assert tmux.returncode != 0
    [down] = api.status([host], **opts)
    assert not down.ok and "not running: yap-stt" in down.error
    [again] = api.stop([host], **opts)
    assert statuses(again)["stop"] == Status.OK
    [c] = api.clean([host], **opts)
    assert c.ok and statuses(c)["clean-files"] == Status.CHANGED
    base = Path(host.base_dir)
    assert not (base / "instances").exists() and (base / "state.json").exists()
    [c2] = api.clean([host], everything=True, **opts)
    assert c2.ok and not base.exists()


def test_failures_end_in_their_own_rows_while_others_carry_on(host, opts, sshd, tmp_path):
    other_key = tmp_path / "otherkey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True)
    good = replace(host, name="good", port=sshd.free_port(), session="yb-good", base_dir=str(tmp_path / "good"))
    hosts = [
        replace(good, name="down", ssh_port=sshd.free_port()),  # nothing listens there
        replace(good, name="badkey", key_file=str(other_key)),
        replace(good, name="unknown", hostname="localhost"),  # known_hosts pins only [127.0.0.1]:port
        replace(good, name="crash", port=sshd.free_port(), session="yb-crash", base_dir=str(tmp_path / "crash"),
                server_command="false --config {config}"),
        good,
    ]
    results = {r.host: r for r in api.up(hosts, **opts)}
    assert results["good"].ok and results["good"].targets
    assert "unreachable" in results["down"].error
    assert "authentication failed" in results["badkey"].error
    assert "unknown host key" in results["unknown"].error and "--accept-new-host-keys" in results["unknown"].error
    crash = statuses(results["crash"])
    assert crash["config"] == Status.CHANGED and Status.FAILED in (crash["start"], crash.get("ready"))
    assert "exited" in results["crash"].error
    for name in ("down", "badkey", "unknown"):
        assert statuses(results[name])["connect"] == Status.FAILED
        assert statuses(results[name])["preflight"] == Status.SKIPPED
    [accepted] = api.stop([hosts[2]], ssh=replace(opts["ssh"], accept_new_host_keys=True), secrets=opts["secrets"])
    assert accepted.ok and statuses(accepted)["stop"] == Status.CHANGED  # stopped "good": same host, same files
