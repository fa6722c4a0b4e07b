"""The RFC 6455 opening handshake as bytes: the client's request, the server's reply parsed and checked.

The load generator opens thousands of connections a minute per process. websocket-client reads the reply one byte
per `recv` call (about 170 calls and 0.8 ms of CPU per upgrade, measured): a ramp that starts a hundred sessions
in the same second then holds the process's hub for the better part of 100 ms, and every paced stream is late by
that much. Here the reply is read in one or two `recv`s and parsed once; bytes past the header (a Ready often comes
in the same segment as the 101) are handed on to the frame reader.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
HEAD_END = b"\r\n\r\n"
MAX_HEAD_BYTES = 16384  # a reply head longer than this is not a WebSocket server's


class UpgradeError(ValueError):
    """A reply that is not a valid 101 Switching Protocols for our request (the status may still be known)."""


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def accept_key(key: str | bytes) -> str:
    """Sec-WebSocket-Accept for a Sec-WebSocket-Key (both sides of the handshake compute it)."""
    raw = key.encode() if isinstance(key, str) else key
    return base64.b64encode(hashlib.sha1(raw + GUID).digest()).decode()


def request(host: str, resource: str, key: str, headers: list[str]) -> bytes:
    """The GET that asks for the upgrade; `host` is the Host header's value (host[:port]), `resource` path?query."""
    lines = [f"GET {resource} HTTP/1.1", f"Host: {host}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13", *headers, "", ""]
    return "\r\n".join(lines).encode()


@dataclass(frozen=True)
class Reply:
    status: int
    reason: str
    headers: dict[str, str]  # lower-cased names


def parse_reply(head: bytes) -> Reply:
    """The status line and headers of a reply head (without the blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise UpgradeError(f"not an HTTP reply: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return Reply(int(parts[1]), parts[2] if len(parts) > 2 else "", headers)


def check_switch(reply: Reply, key: str) -> None:
    """Raise UpgradeError unless `reply` completes the upgrade asked for with `key` (RFC 6455 section 4.1)."""
    if reply.status != 101:
        raise UpgradeError(f"HTTP {reply.status} on the WebSocket upgrade")
    if reply.headers.get("upgrade", "").lower() != "websocket":
        raise UpgradeError("the 101 reply has no 'Upgrade: websocket' header")
    if "upgrade" not in [t.strip().lower() for t in reply.headers.get("connection", "").split(",")]:
        raise UpgradeError("the 101 reply has no 'Connection: Upgrade' header")
    if reply.headers.get("sec-websocket-accept") != accept_key(key):
        raise UpgradeError("the 101 reply's Sec-WebSocket-Accept does not match the key sent")


def split_head(data: bytes | bytearray) -> tuple[bytes, bytes] | None:
    """(head, rest) once `data` holds the whole reply head, else None."""
    end = data.find(HEAD_END)
    if end < 0:
        if len(data) > MAX_HEAD_BYTES:
            raise UpgradeError(f"no end of the reply head within {MAX_HEAD_BYTES} bytes")
        return None
    return bytes(data[:end]), bytes(data[end + len(HEAD_END):])
