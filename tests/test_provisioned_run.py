"""`locust ... --provision hosts.toml`: the master deploys/starts the servers over real SSH, waits for Ready, loads
them."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from provision import api
from provision.credentials import Secrets
from provision.executor import SshOptions
from test_reliability_secrets import inventory as write_inventory

pytest_plugins = ["provision_sshd"]
pytestmark = pytest.mark.sshd

REPO = Path(__file__).resolve().parent.parent


def test_locust_provisions_then_loads_the_servers(sshd, tmp_path):
    key = "yb-" + secrets.token_hex(12)
    inventory = write_inventory(sshd, tmp_path)
    port = tomllib.loads(inventory.read_text())["hosts"][0]["port"]
    run_dir = tmp_path / "run"
    env = {**os.environ, "KYUTAI_API_KEY": key}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "locust", "-f", str(REPO / "locustfiles" / "stt.py"), "--headless", "--only-summary",
             "-u", "2", "-r", "2", "-t", "5s", "--provision", str(inventory), "--known-hosts", sshd.known_hosts,
             "--run-dir", str(run_dir), "--samples", "real/en_ljspeech_LJ002-00*", "--speed", "4", "--no-report"],
            capture_output=True, text=True, timeout=240, cwd=REPO, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        meta = json.loads((run_dir / "run.json").read_text())
        assert meta["targets"] == [f"ws://127.0.0.1:{port}/api/asr-streaming"]
        outcomes = [json.loads(line)["outcome"] for line in (run_dir / "sessions.jsonl").read_text().splitlines()]
        assert outcomes.count("ok") > 0 and "auth_failed" not in outcomes
        # the servers' /metrics, scraped through the same SSH access while the load ran
        scraped = (run_dir / "server_metrics.csv").read_text().splitlines()
        assert len(scraped) >= 3 and all(line.split(",")[1] == meta["targets"][0] for line in scraped[1:]), scraped
        assert key not in proc.stdout + proc.stderr
        assert not any(key in p.read_text(errors="replace") for p in run_dir.iterdir() if p.is_file()
                       and p.suffix in (".json", ".jsonl", ".csv"))
    finally:
        api.stop(str(inventory), ssh=SshOptions(known_hosts=sshd.known_hosts), secrets=Secrets(api_key=key))


def test_an_unreachable_inventory_is_one_clear_line_and_exit_2(sshd, tmp_path):
    inventory = tmp_path / "hosts.toml"
    dead = sshd.free_port(1)
    inventory.write_text(f'[[hosts]]\naddress = "root@127.0.0.1:{dead}"\nkey_file = "{sshd.key_file}"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(REPO / "locustfiles" / "stt.py"), "--headless",
         "-u", "1", "-t", "2s",
         "--provision", str(inventory), "--known-hosts", sshd.known_hosts, "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120, cwd=REPO, env={**os.environ, "KYUTAI_API_KEY": "k"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"127.0.0.1:{dead}" in proc.stderr and "Traceback" not in proc.stderr
