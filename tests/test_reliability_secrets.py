"""The API key never leaks: a whole load and its report with a unique key in $KYUTAI_API_KEY, and the key is in no
process output, server log, run-directory file or process command line (`ps`, sampled during the run).

Provisioning's own secret checks (the key in no remote command, no `ps` on the host, no log, files 0600, host keys
verified) are in tests/test_provision_sshd.py::test_up_uploads_key_safely_starts_and_waits_ready.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from test_locust_runs import REPO
from test_reliability_faults import outcomes


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


@pytest.mark.parametrize("target,auth", [("reference", "header"), ("reference", "query"), ("embedded", "header")])
def test_the_key_appears_in_no_log_report_file_or_command_line(target, auth, ref_server, tmp_path):
    key = "yb-secret-" + secrets.token_hex(16)
    run_dir = tmp_path / "run"
    server = ref_server(step_ms=1, event_log=True, api_key=key) if target == "reference" else None
    cmd = [sys.executable, "-m", "yapbench.cli", "run", "-u", "3", "-r", "3", "-t", "4s", "--think-time", "0.1",
           "--samples", "real/en_ljspeech_LJ002-00*", "--speed", "4", "--auth", auth, "--run-dir", str(run_dir)]
    if server is not None:
        cmd += ["--host", server.url]
    else:
        cmd += ["--server-batch-size", "8"]
    with PsSampler() as ps:
        load = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO,
                              env={**os.environ, "KYUTAI_API_KEY": key})
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
