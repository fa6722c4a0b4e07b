"""The exact strings provision hands to Fabric (sudo prefix, remote timeouts, the 0600 upload), under MockRemote."""

from __future__ import annotations

from unittest.mock import ANY

import pytest
from fabric import Connection
from fabric.testing.base import Command, MockRemote

from provision import servers
from provision.context import Context
from provision.credentials import Secrets
from provision.executor import FabricExecutor
from provision.facts import Facts
from provision.inventory import HostSpec

SUDO = "sudo -S -p '[sudo] password: ' "


def _ctx(uid: int = 1000, **host: object) -> Context:
    # Connection built without connect_kwargs: MockRemote asserts connect() got exactly user/host/port
    ex = FabricExecutor(Connection("gpu1", user="ubuntu"))
    ctx = Context(HostSpec("gpu1", user="ubuntu", **host), ex, Secrets(api_key="k"))  # type: ignore[arg-type]
    ctx.__dict__["facts"] = Facts("/home/ubuntu", uid, "x86_64", "ubuntu", "22.04", {"sudo": "/usr/bin/sudo"}, "12.4",
                                  ())
    return ctx


@pytest.fixture
def mock_remote():
    remote = MockRemote(enable_sftp=True)
    yield remote
    remote.stop()


def test_root_commands_go_through_sudo_with_remote_timeout(mock_remote):
    apt = "env DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a apt-get -q -y -o DPkg::Lock::Timeout=600"
    mock_remote.expect(host="gpu1", user="ubuntu", commands=[
        Command(f"{SUDO}apt-get update"),
        Command(f"{SUDO}timeout -k 30 1800 bash -c '{apt} install --no-install-recommends tmux'"),
        Command("id -u", out=b"1000\n"),
    ])
    ctx = _ctx()
    assert ctx.run("apt-get update", root=True).ok
    ctx.run_long(f"{apt} install --no-install-recommends tmux", "x", timeout_s=1800, root=True)
    assert ctx.run("id -u").stdout == "1000\n"
    mock_remote.safety()


def test_root_login_needs_no_sudo(mock_remote):
    mock_remote.expect(host="gpu1", user="ubuntu", commands=[Command("apt-get update")])
    _ctx(uid=0).run("apt-get update", root=True)
    mock_remote.safety()


def test_secret_file_is_created_0600_then_uploaded_then_renamed(mock_remote):
    path = "/home/ubuntu/yap-stt/instances/8000/config.toml"
    mock_remote.expect(host="gpu1", user="ubuntu", enable_sftp=True, commands=[
        Command(f"mkdir -p /home/ubuntu/yap-stt/instances/8000 && install -m 600 /dev/null {path}.tmp"),
        Command(f"mv -f {path}.tmp {path}"),
    ], transfers=[{"method": "putfo", "fl": ANY, "remotepath": f"{path}.tmp"}])
    _ctx().put_file(b'authorized_ids = ["k"]\n', path, "600")
    mock_remote.safety()


def test_tmux_session_on_private_socket(mock_remote):
    mock_remote.expect(host="gpu1", user="ubuntu", commands=[
        Command("tmux -L yb new-session -d -s yap-stt /srv/yap-stt/instances/8000/start.sh"),
        Command("tmux -L yb list-panes -t =yap-stt: -F '#{pane_pid} #{pane_dead}' 2>/dev/null", out=b"4242 0\n"),
        Command("cat /proc/4242/stat 2>/dev/null",
                out=b"4242 (python3 -m x) S " + b" ".join(b"%d" % i for i in range(4, 30)) + b"\n"),
    ])
    pid, started = servers.start(_ctx(tmux_socket="yb"), "yap-stt", "/srv/yap-stt/instances/8000/start.sh")
    assert (pid, started) == (4242, "22")
    mock_remote.safety()
