"""Run `yapbench serve` as a subprocess on loopback and wait until it really serves (a WebSocket handshake that
gets Ready). Used by the tests and by `yapbench run` for its embedded default server.

    with start_server(batch_size=4, step_ms=0) as server:
        server.url        # ws://127.0.0.1:PORT   (append server.path for the streaming endpoint)
        server.http_url   # http://127.0.0.1:PORT

Options are the CLI's, by their Python names (`batch_size=4` -> `--batch-size 4`, `event_log=True` picks a file
in the server's temporary directory, a bool True is a bare flag). `api_key` travels in an environment variable,
never on the command line.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..protocol import API_KEY_HEADER, DEFAULT_PATH, READY_BYTES
from ..wsframe import OP_BINARY, FrameReader, client_frame

API_KEY_ENV = "YAPBENCH_SERVE_API_KEY"
PROBE_HEADER = "x-yapbench-probe"  # the server exempts this handshake from faults and marks it in the event log
DEFAULT_KEY = "public_token"
_LISTENING = re.compile(r"listening on http://([^\s:]+):(\d+)")


class ServerStartError(RuntimeError):
    """The server did not come up; the message ends with the tail of its stderr."""


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    host: str
    path: str
    api_key: str
    workdir: Path
    event_log: Path | None = None
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return self.url + self.path

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / "stderr.log"

    def log_text(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        return self.process.returncode

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _cli_args(options: dict[str, Any], workdir: Path) -> tuple[list[str], Path | None]:
    args: list[str] = []
    event_log: Path | None = None
    for name, value in options.items():
        if value is None or value is False:
            continue
        if name == "event_log":
            event_log = workdir / "events.jsonl" if value is True else Path(value)
            value = str(event_log)
        flag = "--" + name.replace("_", "-")
        args.append(flag) if value is True else args.extend([flag, str(value)])
    return args, event_log


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no stderr)"


def wait_ready(host: str, port: int, path: str, api_key: str, timeout: float) -> bool:
    """One real WebSocket handshake that gets Ready within `timeout` (the warm-up may still be running)."""
    deadline = time.monotonic() + timeout
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: eWFwYmVuY2gtcmVhZHkhIQ==\r\nSec-WebSocket-Version: 13\r\n"
               f"{API_KEY_HEADER}: {api_key}\r\n{PROBE_HEADER}: 1\r\n\r\n").encode()
    try:
        with socket.create_connection((host, port), timeout=max(0.1, deadline - time.monotonic())) as sock:
            sock.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                data += chunk
            head, rest = data.split(b"\r\n\r\n", 1)
            if not head.startswith(b"HTTP/1.1 101"):
                return False
            reader = FrameReader(expect_masked=False)
            frames = reader.feed(rest)
            while not frames:
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                chunk = sock.recv(4096)
                if not chunk:
                    return False
                frames = reader.feed(chunk)
            ok = frames[0].opcode == OP_BINARY and frames[0].payload == READY_BYTES
            sock.sendall(client_frame(b"\x03\xe8", opcode=0x8))  # a clean close (1000)
            return ok
    except OSError:
        return False


def _slots_idle(server: ServerProcess, deadline: float) -> bool:
    """Wait until the probe's slot is released, so a batch_size=1 server is free for the caller."""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(server.http_url + "/api/modules_info", timeout=2) as answer:
                if all(m.get("used_slots") == "0" for m in json.load(answer)):
                    return True
        except OSError:
            pass
        time.sleep(0.01)
    return False


def start_server(timeout: float = 20.0, api_key: str | None = None, host: str = "127.0.0.1",
                 path: str = DEFAULT_PATH, **options: Any) -> ServerProcess:
    """Start `yapbench serve` on a free port of `host`; ServerStartError (with stderr's tail) if it does not serve."""
    workdir = Path(tempfile.mkdtemp(prefix="yapbench-serve-"))
    cli, event_log = _cli_args({"addr": host, "port": 0, **options}, workdir)
    env = dict(os.environ)
    key = api_key or DEFAULT_KEY
    if api_key is not None:
        env[API_KEY_ENV] = api_key
        cli += ["--api-key-env", API_KEY_ENV]
    env.setdefault("PYTHONUNBUFFERED", "1")
    stdout_path, stderr_path = workdir / "stdout.log", workdir / "stderr.log"
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        process = subprocess.Popen([sys.executable, "-m", "yapbench.cli", "serve", *cli], stdout=out, stderr=err,
                                   stdin=subprocess.DEVNULL, env=env, start_new_session=True)
    deadline = time.monotonic() + timeout
    port = 0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerStartError(f"yapbench serve exited with code {process.returncode}:\n{_tail(stderr_path)}")
        match = _LISTENING.search(stdout_path.read_text(errors="replace"))
        if match:
            port = int(match.group(2))
            break
        time.sleep(0.05)
    server = ServerProcess(process, port, host, path, key, workdir, event_log, cli)
    while port and time.monotonic() < deadline:
        if wait_ready(host, port, path, key, deadline - time.monotonic()) and _slots_idle(server, deadline):
            return server
        if process.poll() is not None:
            break
        time.sleep(0.05)
    server.stop()
    raise ServerStartError(f"yapbench serve did not answer Ready within {timeout:.0f} s:\n{_tail(stderr_path)}")
