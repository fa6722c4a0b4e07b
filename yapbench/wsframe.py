"""RFC 6455 WebSocket framing, both directions, without a socket.

The load generator sends a few thousand 9.6 KB frames a second per process; building each masked frame once per
clip and writing it with one `send` is what makes that cheap (the handshake itself is websocket-client's job).
The reference server uses the same code to read masked client frames and write unmasked ones.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

import numpy as np

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
CONTROL_OPCODES = frozenset({OP_CLOSE, OP_PING, OP_PONG})


class FrameError(ValueError):
    """Bytes on the wire that are not a valid WebSocket frame sequence."""


def _header(opcode: int, length: int, masked: bool, fin: bool = True) -> bytes:
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if masked else 0
    if length < 126:
        return struct.pack("!BB", first, mask_bit | length)
    if length < 1 << 16:
        return struct.pack("!BBH", first, mask_bit | 126, length)
    return struct.pack("!BBQ", first, mask_bit | 127, length)


def apply_mask(payload: bytes, key: bytes) -> bytes:
    """XOR with the 4-byte key (masking and unmasking are the same operation)."""
    if not payload:
        return b""
    n = len(payload)
    data = np.frombuffer(payload, dtype=np.uint8)
    tiled = np.frombuffer(key * ((n + 3) // 4), dtype=np.uint8, count=n)
    return np.bitwise_xor(data, tiled).tobytes()


def client_frame(payload: bytes, opcode: int = OP_BINARY, mask_key: bytes | None = None) -> bytes:
    """A complete masked frame as a client must send it."""
    key = mask_key if mask_key is not None else os.urandom(4)
    return _header(opcode, len(payload), masked=True) + key + apply_mask(payload, key)


_SHORT_BINARY_HEADERS = [bytes((0x80 | OP_BINARY, n)) for n in range(126)]


def server_frame(payload: bytes, opcode: int = OP_BINARY) -> bytes:
    """A complete unmasked frame as a server sends it."""
    n = len(payload)
    if n < 126 and opcode == OP_BINARY:  # most server messages (Step, Word, EndWord): no struct.pack per message
        return _SHORT_BINARY_HEADERS[n] + payload
    return _header(opcode, n, masked=False) + payload


def close_payload(code: int | None, reason: str = "") -> bytes:
    """Close frame body; None gives an empty body (no status code, which peers report as 1005)."""
    if code is None:
        return b""
    return struct.pack("!H", code) + reason.encode()[:123]


def parse_close_payload(payload: bytes) -> tuple[int | None, str]:
    if len(payload) < 2:
        return None, ""
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8", "replace")


@dataclass(slots=True)
class Frame:
    opcode: int
    payload: bytes


class FrameReader:
    """Incremental parser: `feed` bytes as they arrive, get back whole messages (fragments joined).

    ``expect_masked`` is True on the server side (client frames must be masked) and False on the client side.
    ``max_message`` bounds memory against a peer that announces a huge frame.
    """

    __slots__ = ("_buf", "_expect_masked", "_max", "_frag_op", "_frags")

    def __init__(self, expect_masked: bool, max_message: int = 64 << 20) -> None:
        self._buf = bytearray()
        self._expect_masked = expect_masked
        self._max = max_message
        self._frag_op: int | None = None
        self._frags: list[bytes] = []

    @property
    def pending(self) -> int:
        return len(self._buf)

    @property
    def idle(self) -> bool:
        """No partial frame buffered and no fragmented message open: the next bytes start a fresh frame."""
        return not self._buf and self._frag_op is None

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        buf += data
        out: list[Frame] = []
        pos = 0
        end = len(buf)
        while end - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            if b0 & 0x70:
                raise FrameError("reserved bits set (no extension was negotiated)")
            fin = b0 & 0x80
            opcode = b0 & 0x0F
            masked = b1 & 0x80
            if bool(masked) != self._expect_masked:
                raise FrameError("client frames must be masked" if self._expect_masked else "server frame is masked")
            length = b1 & 0x7F
            head = 2
            if length == 126:
                if end - pos < 4:
                    break
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                head = 4
            elif length == 127:
                if end - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                head = 10
            if length > self._max:
                raise FrameError(f"frame of {length} bytes exceeds the {self._max}-byte limit")
            if masked:
                head += 4
            if end - pos < head + length:
                break
            payload = bytes(buf[pos + head : pos + head + length])
            if masked:
                payload = apply_mask(payload, bytes(buf[pos + head - 4 : pos + head]))
            pos += head + length
            if opcode in CONTROL_OPCODES:
                if not fin or length > 125:
                    raise FrameError("control frames must be unfragmented and at most 125 bytes")
                out.append(Frame(opcode, payload))
            elif opcode == OP_CONTINUATION:
                if self._frag_op is None:
                    raise FrameError("continuation frame without a message to continue")
                self._frags.append(payload)
                if fin:
                    out.append(Frame(self._frag_op, b"".join(self._frags)))
                    self._frag_op, self._frags = None, []
            elif opcode in (OP_TEXT, OP_BINARY):
                if self._frag_op is not None:
                    raise FrameError("new data frame inside a fragmented message")
                if fin:
                    out.append(Frame(opcode, payload))
                else:
                    self._frag_op, self._frags = opcode, [payload]
            else:
                raise FrameError(f"unknown opcode {opcode:#x}")
        if pos:
            del buf[:pos]
        return out
