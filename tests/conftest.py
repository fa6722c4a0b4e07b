"""Shared fixtures.

- `ref_server(**options)` starts a reference server subprocess (`yapbench.server.launch.start_server`, options as
  `yapbench serve`'s flags); every server a test starts is stopped at teardown.
- `raw_ws(server, **handshake)` opens a raw-socket WebSocket client (`RawWS`) that shows every frame as sent.
- `get(server, path)` is an HTTP GET -> (status, body).
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from yapbench.protocol import (API_KEY_HEADER, DEFAULT_PATH, FRAME_SAMPLES, decode_server_message, encode_audio,
                               encode_marker)
from yapbench.server.launch import ServerProcess, start_server
from yapbench.wsframe import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, Frame, FrameReader, client_frame, \
    parse_close_payload


@pytest.fixture
def ref_server() -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def factory(**options: Any) -> ServerProcess:
        server = start_server(**options)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


# --- a raw, synchronous WebSocket client: exact control of what goes on the wire and full view of what comes back


class RawWS:
    """One client connection over a plain socket (no library between the test and the wire)."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=5)
        self.reader = FrameReader(expect_masked=False)
        self.pending: list[Frame] = []
        self.status = 0
        self.head = b""

    def handshake(self, path: str = DEFAULT_PATH, key: str | None = "public_token", query: str = "",
                  headers: dict[str, str] | None = None) -> int:
        lines = [f"GET {path}{query} HTTP/1.1", "Host: test", "Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
        if key is not None:
            lines.append(f"{API_KEY_HEADER}: {key}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            data += chunk
        self.head, _, rest = data.partition(b"\r\n\r\n")
        self.status = int(self.head.split(b" ")[1]) if self.head else 0
        if rest:
            self.pending += self.reader.feed(rest)
        return self.status

    def send(self, payload: bytes, opcode: int = OP_BINARY) -> None:
        self.sock.sendall(client_frame(payload, opcode))

    def send_audio(self, pcm: np.ndarray) -> None:
        self.send(encode_audio(pcm))

    def send_frames(self, n: int, value: float = 0.0) -> None:
        frame = encode_audio(np.full(FRAME_SAMPLES, value, dtype=np.float32))
        self.sock.sendall(b"".join(client_frame(frame) for _ in range(n)))

    def send_marker(self, marker_id: int) -> None:
        self.send(encode_marker(marker_id))

    def next_frame(self, timeout: float = 5.0) -> Frame | None:
        """The next frame from the server, or None at EOF; socket.timeout if nothing comes."""
        deadline = time.monotonic() + timeout
        while not self.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("no frame")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(1 << 20)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            self.pending += self.reader.feed(chunk)
        return self.pending.pop(0)

    def recv(self, timeout: float = 5.0) -> Any:
        """Next data message decoded; ("ping", b), ("pong", b), ("close", code) or ("eof",) otherwise."""
        frame = self.next_frame(timeout)
        if frame is None:
            return ("eof",)
        if frame.opcode == OP_BINARY:
            return decode_server_message(frame.payload)
        if frame.opcode == OP_CLOSE:
            return ("close", parse_close_payload(frame.payload)[0], frame.payload)
        return ({OP_PING: "ping", OP_PONG: "pong"}.get(frame.opcode, "other"), frame.payload)

    def collect(self, until: Callable[[Any], bool], timeout: float = 10.0) -> list[Any]:
        """Messages up to and including the first one `until` accepts (or EOF)."""
        out: list[Any] = []
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.01, deadline - time.monotonic()))
            out.append(msg)
            if until(msg) or msg == ("eof",):
                return out

    def quiet_for(self, seconds: float) -> bool:
        """True if nothing at all arrives for `seconds`."""
        try:
            self.next_frame(seconds)
        except socket.timeout:
            return True
        return False

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def raw_ws() -> Iterator[Callable[..., RawWS]]:
    """Factory: raw_ws(server, **handshake_args) -> RawWS after the handshake; all closed at teardown."""
    opened: list[RawWS] = []

    def factory(server: ServerProcess, handshake: bool = True, **kwargs: Any) -> RawWS:
        ws = RawWS(server.host, server.port)
        opened.append(ws)
        if handshake:
            ws.handshake(**kwargs)
        return ws

    yield factory
    for ws in opened:
        ws.close()


def http_get(server: ServerProcess, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(server.http_url + path, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def get() -> Callable[[ServerProcess, str], tuple[int, bytes]]:
    return http_get


@pytest.fixture(autouse=True)
def _no_gevent_patching_in_the_test_process():
    """The same, at run time: the test that patched fails by name, instead of a later one hanging."""
    yield
    from gevent import monkey

    if monkey.is_module_patched("threading"):
        pytest.fail("this test imported locust (or patched gevent) into the pytest process; use a subprocess")


def pytest_collection_finish(session: pytest.Session) -> None:
    """Importing locust (or yapbench.locust) monkey-patches the whole test process: threads become greenlets and
    unrelated tests hang or fail later. Test Locust code in a child process instead; say so at once."""
    from gevent import monkey

    if monkey.is_module_patched("threading"):
        raise pytest.UsageError("a test module imports locust at import time, which gevent-patches the whole pytest "
                                "process; exercise Locust code in a subprocess (see tests/test_shapes.py)")
