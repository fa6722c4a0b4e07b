"""One TCP connection: HTTP requests, then (after a 101) the WebSocket side of one slot.

A raw asyncio.Protocol, no per-message coroutine: bytes in -> frames -> decoded messages into the slot's inbox;
the model loop's output -> one socket write per step. The receive/send rules are those of batched_asr.rs's
`recv_loop` / `send_loop` on top of tungstenite:
- binary frames are decoded with serde's strictness; anything undecodable ends the receive side silently;
- text, ping and pong frames only count as "a frame arrived" (pings are answered);
- a Close frame ends the receive side; tungstenite queues the close reply, which only goes out if the server
  later tries to send something (and that send then fails, closing the send side too);
- when the slot is released the socket is dropped without a close frame.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import TYPE_CHECKING, Protocol

from ..protocol import (NO_FREE_CHANNELS, Audio, Error, ProtocolError, ServerMessage, decode_client_message,
                        encode_server_message)
from ..wsframe import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, FrameError, FrameReader, close_payload, server_frame
from .httpio import MAX_HEAD, HttpError, Request, parse_head, response, upgrade_response
from .slots import Slot

if TYPE_CHECKING:
    from .audio_frames import MaskedAudioDecoder
    from .config import ServerConfig
    from .eventlog import EventLog
    from .model_loop import ModelLoop

log = logging.getLogger("yapbench.server")
GARBAGE = b"\xc1\xc1\xc1\xc1"  # 0xc1 is the one byte msgpack never uses: undecodable whatever the client


class ServerSide(Protocol):
    """What a connection uses of the server that accepted it (app.Server): the connection never imports the app."""

    config: ServerConfig
    model: ModelLoop
    events: EventLog | None
    audio_frames: MaskedAudioDecoder  # the receive fast path, shared by every connection
    connections: set[Connection]
    ws_connections: set[Connection]

    def next_conn_id(self) -> int: ...

    def handle_request(self, conn: Connection, req: Request) -> None: ...


class Connection(asyncio.Protocol):
    def __init__(self, server: ServerSide) -> None:
        self.server = server
        self.conn_id = server.next_conn_id()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self._inbuf = bytearray()
        self._request: Request | None = None
        self.busy = False  # an HTTP request is being answered asynchronously (offline transcription)
        # WebSocket state
        self.ws = False
        self.slot: Slot | None = None
        self._reader: FrameReader | None = None
        self._partial = b""  # the start of an Audio frame cut off by the end of a read (the fast path's own buffer)
        self.recv_done = False
        self.out_closed = False
        self.peer_closed = False  # a Close frame came in: tungstenite's ClosedByPeer
        self.stalled = False
        self.last_frame = self.last_binary = self.last_send = time.monotonic()
        self._out: list[bytes] = []
        self._out_kinds: list[tuple[str, str | None]] = []  # what the event log records of them (only with one)
        self._events = server.events
        self._sent = 0
        self._garbage_every = 0

    # --- asyncio.Protocol ---------------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports subclass no asyncio class
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        if self.slot is not None:
            self.recv_done = self.slot.recv_done = True
            self.out_closed = True
            self.server.model.wake(self.slot)

    def data_received(self, data: bytes) -> None:
        if self.ws:
            self._ws_data(data)
        else:
            self._inbuf += data
            self.parse_requests()

    # --- HTTP ---------------------------------------------------------------------------------------------------

    def parse_requests(self) -> None:
        while not self.ws and not self.busy and self.transport is not None:
            if self._request is None:
                end = self._inbuf.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._inbuf) > MAX_HEAD:
                        self.respond(response(431, close=True), close=True)
                    return
                head = bytes(self._inbuf[:end])
                del self._inbuf[: end + 4]
                try:
                    self._request = parse_head(head)
                except HttpError as exc:
                    self.respond(response(exc.status, exc.body.encode(), "text/plain; charset=utf-8", close=True),
                                 close=True)
                    return
            req = self._request
            if len(self._inbuf) < req.content_length:
                return
            req.body = bytes(self._inbuf[: req.content_length])
            del self._inbuf[: req.content_length]
            self._request = None
            self.server.handle_request(self, req)

    def respond(self, data: bytes, close: bool = False) -> None:
        if self.transport is None:
            return
        self.transport.write(data)
        if close:
            self.transport.close()

    def finish_async(self, data: bytes, keep_alive: bool) -> None:
        """The answer to a request that `busy` held back; then carry on with pipelined requests."""
        self.busy = False
        self.respond(data, close=not keep_alive)
        if keep_alive:
            self.parse_requests()

    # --- WebSocket ----------------------------------------------------------------------------------------------

    def upgrade(self, req: Request, probe: bool = False) -> None:
        """Write the 101, then take a slot or turn the client away as moshi does (after the upgrade).

        `probe`: launch.py's readiness handshake, exempt from faults and marked in the event log."""
        assert self.transport is not None
        self.transport.write(upgrade_response(req))
        self.ws = True
        self._reader = FrameReader(expect_masked=True)
        self.last_frame = self.last_binary = self.last_send = time.monotonic()
        events = self.server.events
        slot = self.server.model.acquire(self, faults=not probe)
        if slot is None:
            log.error("no free channels conn=%d peer=%s", self.conn_id, self.peer)
            if events:
                events.event("reject", self.conn_id)
            msg = Error(NO_FREE_CHANNELS)
            self._write_now([server_frame(encode_server_message(msg)), server_frame(close_payload(None), OP_CLOSE)],
                            [("Error", None), ("Close", None)])
            self.transport.close()
            return
        self.slot = slot
        self._garbage_every = slot.faults.garbage_every
        self.server.ws_connections.add(self)
        log.info("batched-asr channel batch_idx=%d conn=%d peer=%s", slot.index, self.conn_id, self.peer)
        if events:
            events.event("accept", self.conn_id, slot=slot.index, **({"probe": True} if probe else {}))
        if self._inbuf:  # frames that came in the same packet as the request
            pending, self._inbuf = bytes(self._inbuf), bytearray()
            self._ws_data(pending)

    def _ws_data(self, data: bytes) -> None:
        if self.recv_done or self.stalled or self.slot is None:
            return  # the receive loop has ended: nothing more is read
        reader = self._reader
        assert reader is not None
        if reader.idle:  # the common case, whole Audio frames: no frame objects, no msgpack
            if self._partial:
                data, self._partial = self._partial + data, b""
            data = self._audio_frames(data)
            if not data:
                return
        try:
            frames = reader.feed(data)
        except FrameError as exc:
            self.end_recv(f"task failed name=\"recv_loop\" err={exc}")
            return
        now = self.last_frame = time.monotonic()
        model, slot = self.server.model, self.slot
        for frame in frames:
            if now - self.last_binary > self.server.config.long_timeout_s:
                self.end_recv("recv loop long timeout")
                return
            op = frame.opcode
            if op == OP_BINARY:
                self.last_binary = now
                try:
                    msg = decode_client_message(frame.payload)
                except ProtocolError as exc:
                    self.end_recv(f"task failed name=\"recv_loop\" err={exc}")
                    return
                model.push(slot, msg)
            elif op == OP_PING:
                self._write_now([server_frame(frame.payload, OP_PONG)], [("Pong", None)])
            elif op == OP_CLOSE:
                self.peer_closed = True
                self.end_recv("client closed")
                return
            # text and pong frames: ignored, they only reset the short timeout

    def _audio_frames(self, data: bytes) -> bytes:
        """Push the leading whole float32 Audio frames of `data` (the receive fast path) and keep a trailing one the
        read cut off for the next read; returns what the general parser must take, from the first frame that is
        anything else (or b"" when nothing is left)."""
        decode, model, slot = self.server.audio_frames.decode, self.server.model, self.slot
        now = self.last_frame = time.monotonic()
        start, end = 0, len(data)
        while start < end:
            if end - start < 4:  # not even the length yet
                if data[start] == 0x82 and (end - start == 1 or data[start + 1] == 0xFE):
                    self._partial = data[start:]
                    return b""
                return data[start:]
            frame_end = start + 8 + ((data[start + 2] << 8) | data[start + 3])
            if frame_end > end and data[start] == 0x82 and data[start + 1] == 0xFE:
                self._partial = data[start:]
                return b""
            pcm = decode(data, start)
            if pcm is None:
                return data[start:]
            if now - self.last_binary > self.server.config.long_timeout_s:
                self.end_recv("recv loop long timeout")
                return b""
            self.last_binary = now
            model.push(slot, Audio(pcm))  # type: ignore[arg-type]
            start = frame_end
        return b""

    def end_recv(self, reason: str) -> None:
        if self.recv_done or self.slot is None:
            return
        log.info("recv loop ended conn=%d batch_idx=%d: %s", self.conn_id, self.slot.index, reason)
        self.recv_done = self.slot.recv_done = True
        self.server.model.wake(self.slot)

    def stall(self) -> None:
        self.stalled = True

    # --- Sink (what the model loop calls) ----------------------------------------------------------------------

    def queue(self, kind: str, payload: bytes, msg: ServerMessage | None) -> None:
        if self.out_closed or self.stalled:
            return
        if self._garbage_every:
            self._sent += 1
            if self._sent % self._garbage_every == 0:
                kind, payload, msg = "Garbage", GARBAGE, None
        self._out.append(server_frame(payload))
        if self._events is not None:
            self._out_kinds.append((kind, getattr(msg, "text", None)))

    def flush(self) -> None:
        chunks = self._out
        if not chunks:
            return
        self._out = []
        transport = self.transport
        if self._events is None and transport is not None and not (self.out_closed or self.peer_closed):
            # The usual step (what `_send` does when nothing is special), in one call: one write, its one Step.
            transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))
            self.last_send = time.monotonic()
            return
        kinds, self._out_kinds = self._out_kinds, []
        self._send(chunks, kinds)

    def send_ping(self) -> None:
        if not self.out_closed and not self.stalled:
            self._send([server_frame(b"", OP_PING)], [("Ping", None)])

    def _send(self, chunks: list[bytes], kinds: list[tuple[str, str | None]]) -> None:
        """The send loop's `sender.send`: after a peer Close, flush the close reply and fail (tungstenite)."""
        if self.transport is None or self.out_closed:
            return
        if self.peer_closed:
            self._write_now([server_frame(close_payload(None), OP_CLOSE)], [("Close", None)])
            self.out_closed = True
            if self.slot is not None:
                self.server.model.wake(self.slot)
            return
        self._write_now(chunks, kinds)
        self.last_send = time.monotonic()  # only the send loop's own messages postpone its ping (not pongs)

    def _write_now(self, chunks: list[bytes], kinds: list[tuple[str, str | None]]) -> None:
        if self.transport is None:
            return
        events = self._events
        if events is None:
            self.transport.write(b"".join(chunks))
            return
        t = time.time()  # right before the write: clients compare their receive times with it
        self.transport.write(b"".join(chunks))
        events.sends(self.conn_id, t, kinds)

    def released(self, close_code: int | None | bool) -> None:
        self.slot = None
        self.server.ws_connections.discard(self)
        if self.transport is None:
            return
        if close_code is not False and not self.out_closed:
            self._write_now([server_frame(close_payload(close_code), OP_CLOSE)], [("Close", None)])
        self.transport.close()

    # --- keep-alive (called by the server's housekeeping) -------------------------------------------------------

    def check_timeouts(self, now: float) -> None:
        if self.slot is None or self.stalled:
            return
        if not self.recv_done and now - self.last_frame > self.server.config.short_timeout_s:
            self.end_recv("recv loop short timeout")
        if now - self.last_send >= self.server.config.ping_every_s:
            self.send_ping()
