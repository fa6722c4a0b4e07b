"""Is the server really serving? A WebSocket handshake that gets `Ready`, through an SSH direct-tcpip channel.

An open port is not enough: moshi-server listens before its model loop has warmed up. Going through the SSH
connection also works when the server port is firewalled, and sends the key only inside the tunnel, as a
header (never `?auth_id=`, which the server logs).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable

from yapbench.protocol import (API_KEY_HEADER, DEFAULT_PATH, NO_FREE_CHANNELS, Error, ProtocolError, Ready,
                               decode_server_message)

OpenChannel = Callable[[str, int, float], Any]  # (host, port, timeout) -> socket-like


@dataclass(frozen=True)
class Probe:
    ready: bool
    reason: str
    fatal: bool = False  # retrying cannot help (wrong key, not a moshi server)


def handshake(open_channel: OpenChannel, host: str, port: int, api_key: str, timeout: float = 5.0) -> Probe:
    import websocket

    try:
        chan = open_channel(host, port, timeout)
    except Exception as exc:  # paramiko ChannelException: nothing listening yet
        return Probe(False, f"port {port} not accepting connections ({exc})")
    ws = websocket.WebSocket(enable_multithread=False)
    try:
        ws.settimeout(timeout)
        ws.connect(f"ws://{host}:{port}{DEFAULT_PATH}", socket=chan, header=[f"{API_KEY_HEADER}: {api_key}"],
                   timeout=timeout)
        data = ws.recv()
        if isinstance(data, str):
            return Probe(False, "server sent a text frame, not msgpack", fatal=True)
        msg = decode_server_message(data)
        if isinstance(msg, Ready):
            return Probe(True, "Ready")
        if isinstance(msg, Error) and NO_FREE_CHANNELS in msg.message:
            return Probe(True, "answering (all slots busy)")
        return Probe(False, f"first message was {type(msg).__name__}, not Ready", fatal=isinstance(msg, Error))
    except websocket.WebSocketBadStatusException as exc:
        fatal = exc.status_code in (401, 403)
        why = "API key refused (not in authorized_ids)" if fatal else "handshake refused"
        return Probe(False, f"{why}: HTTP {exc.status_code}", fatal=fatal)
    except ProtocolError as exc:
        return Probe(False, f"not the moshi protocol: {exc}", fatal=True)
    except (websocket.WebSocketException, OSError) as exc:
        return Probe(False, f"no Ready yet ({type(exc).__name__}: {exc})")
    finally:
        try:
            ws.close(timeout=1)
        except Exception:
            pass
        chan.close()


def wait_ready(probe: Callable[[], Probe], alive: Callable[[], bool], timeout: float, interval: float = 1.0) -> Probe:
    """Retry `probe` until Ready, a fatal answer, the server process gone, or `timeout`; returns the last probe."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result.ready or result.fatal:
            return result
        if not alive():
            return Probe(False, f"server exited ({result.reason})", fatal=True)
        if time.monotonic() + interval > deadline:
            return Probe(False, f"not Ready after {timeout:.0f} s: {result.reason}")
        time.sleep(interval)


def http_get(open_channel: OpenChannel, host: str, port: int, path: str, timeout: float = 5.0) -> bytes:
    """GET `path` through the tunnel: the body of a 200 answer; OSError (with the status or the reason) otherwise."""
    try:
        chan = open_channel(host, port, timeout)
    except Exception as exc:  # paramiko ChannelException: nothing listening there
        raise OSError(f"port {port} not accepting connections ({exc})") from None
    try:
        chan.settimeout(timeout)
        chan.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        buf = b""
        while len(buf) < 1 << 22:
            chunk = chan.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        chan.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1:2]
    if not head.startswith(b"HTTP/1.") or not status:
        raise OSError(f"GET {path}: not an HTTP answer")
    if status[0] != b"200":
        raise OSError(f"GET {path}: HTTP {status[0].decode(errors='replace')}")
    return body


def http_get_json(open_channel: OpenChannel, host: str, port: int, path: str, timeout: float = 5.0) -> Any:
    """GET a small JSON document (e.g. /api/modules_info) through the tunnel; None when unavailable."""
    try:
        return json.loads(http_get(open_channel, host, port, path, timeout))
    except (OSError, ValueError):
        return None
