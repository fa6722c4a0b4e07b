"""The per-process streaming engine: paces frames and parses replies for every open stream, in the gevent hub.

One session greenlet per stream, each sleeping to its own frame deadlines and reading its own socket, costs two
greenlet switches per frame and per message; at a thousand streams that is the generator's whole CPU. Here
instead one periodic hub timer sends every frame that is due, for all streams, in one pass, and each socket's
readability runs a plain callback that parses whatever arrived (no greenlet switch). Session greenlets only
connect, wait for the outcome, and compute the result (yapbench.session).

Frames are pre-built, masked WebSocket frames shared by every stream of a clip; a send is one non-blocking
`send()` of bytes that already exist. Times come from `time.perf_counter()`, converted to epoch seconds once.

Masking keys: every frame of a clip has its own random key, drawn once when the corpus is built, and every stream
of the process sends those same bytes, a deliberate deviation from RFC 6455 section 5.3 (a fresh key per frame);
why, and what a fresh key would cost (benchmarks/mask_cost.py), is in docs/loadgen.md, "Masking keys".
"""

from __future__ import annotations

import bisect
import functools
import heapq
import itertools
import time
from collections import deque
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Callable

import gevent
import gevent.event
import numpy as np

from . import protocol as P
from . import wsframe
from .endofturn import DEFAULT_RULE, EndOfTurnRule
from .metrics import Outcome

TICK_S = 0.001  # pacing resolution: the hub wakes at most this often to send due frames
LINGER_S = 2.0  # how long a finished stream may take to complete a half-sent frame before its clean close
RECV_BYTES = 65536  # one read; a fuller socket is read again at once (libev's io watchers are level-triggered)
# A whole unmasked binary frame (short length) holding a msgpack Step: the 1B model sends one per stream per step,
# most of the receive traffic, and all a Step changes here is a counter. Recognised by its bytes, not decoded.
_STEP_PAYLOAD = P.STEP_PREFIX
_STEP_PAYLOAD_AT = 2  # after the frame's two header bytes (a Step is far shorter than 126 bytes)


@dataclass(frozen=True)
class Turn:
    """One turn of a conversation: its sample and its speech frames [start, end) in the conversation's frames."""

    sample: str
    start: int
    end: int


@dataclass(frozen=True)
class PreparedClip:
    """A clip as the wire carries it: masked WebSocket frames, built once, shared by all streams."""

    name: str
    frames: tuple[bytes, ...]  # speech (and optional silence prefix) frames, in order
    silence: bytes  # one masked frame of 1920 zeros, for the flush burst
    audio_s: float
    turns: tuple[Turn, ...] = ()  # a conversation's turns (yapbench.conversation); () for a single clip
    end_of_turn: EndOfTurnRule = DEFAULT_RULE  # how a conversation's Steps say a turn is over
    flush_turns: bool = False  # a Marker after each turn's speech (flush=turn), not only after the last pause

    @property
    def n_frames(self) -> int:
        return len(self.frames)


def prepare_clip(name: str, frames_pcm: np.ndarray) -> PreparedClip:
    """frames_pcm: (n, 1920) float32, e.g. `Clip.frames()` (with any silence prefix already prepended)."""
    wire = tuple(wsframe.client_frame(P.encode_audio(f)) for f in frames_pcm)
    silence = wsframe.client_frame(P.encode_audio(np.zeros(P.FRAME_SAMPLES, dtype=np.float32)))
    return PreparedClip(name, wire, silence, len(wire) * P.FRAME_SECONDS)


class Phase(IntEnum):
    AWAIT_READY = 0
    STREAMING = 1
    FLUSHING = 2  # speech sent, Marker and silence burst sent, waiting for the echo
    DONE = 3


MessageListener = Callable[["Stream", P.ServerMessage, float], None]


class Stream:
    """One connection after the upgrade: its pacing plan, its receive parser and everything it observed."""

    def __init__(
        self,
        sock,
        clip: PreparedClip,
        speed: float,
        marker_id: int,
        flush_frames: int,
        flush_timeout_s: float,
        listener: MessageListener | None = None,
    ) -> None:
        self.sock = sock
        self.clip = clip
        self.period = P.FRAME_SECONDS / speed
        self.marker_id = marker_id
        self.flush_frames = flush_frames
        self.flush_timeout_s = flush_timeout_s
        self.listener = listener
        # Steps are only counted, unless someone reads them: a listener, or a conversation's end-of-turn detection.
        self.decode_steps = listener is not None or bool(clip.turns)
        self.phase = Phase.AWAIT_READY
        self.reader = wsframe.FrameReader(expect_masked=False)
        # (frame index or -1, unsent bytes, frame size): a write of several equal frames (the silence burst) is one
        # entry, so that where its frames end is known when the stream closes in the middle of it
        self.pending: deque[tuple[int, memoryview, int]] = deque()
        self.next_frame = 0
        self.frames_sent = 0
        self.t_start = 0.0  # perf time the first frame was scheduled for
        self.send_perf = np.zeros(clip.n_frames)
        self.t_ready: float | None = None
        self.t_first_msg: float | None = None
        self.t_first_word: float | None = None
        self.t_marker: float | None = None
        self.steps = 0
        self.backlog_max_ms: float | None = None
        self.words: list[tuple[str, float, float]] = []  # (text, start_time, t_recv)
        self.end_words: list[tuple[int, float, float]] = []  # (word index, stop_time, t_recv)
        self.turn_starts = [t.start for t in clip.turns]
        self.eot_recv: list[float | None] = [None] * len(clip.turns)  # first Step above threshold after each turn
        self.false_eot = [0] * len(clip.turns)  # rises above the threshold inside each turn's speech
        self.eot = clip.end_of_turn.detector()
        self._eot_above = False
        # flush=turn: the Marker written after each turn's last speech frame (ids after the final one's), its echo
        self.turn_markers = {t.end - 1: (k, wsframe.client_frame(P.encode_marker(marker_id + 1 + k)))
                             for k, t in enumerate(clip.turns)} if clip.flush_turns else {}
        self.turn_flush_recv: list[float | None] = [None] * len(clip.turns)
        self.outcome: Outcome | None = None
        self.error = ""
        self.close_code: int | None = None
        self.ready = gevent.event.Event()
        self.done = gevent.event.Event()
        self._read_watcher: Any = None  # gevent's libev watchers (untyped)
        self._write_watcher: Any = None
        self._flush_timer: Any = None
        self._streamer: Streamer | None = None

    @property
    def streamer(self) -> Streamer:
        """The Streamer that paces this stream: set by `Streamer.add`, before anything is sent or received."""
        assert self._streamer is not None
        return self._streamer

    # -- sending ----------------------------------------------------------------------------------------------

    def _write(self, index: int, data: bytes, frame_size: int = 0) -> None:
        """Send now if nothing is queued, else queue; `index` >= 0 marks a speech frame whose send time counts.
        `data` is one frame, or several of `frame_size` bytes each."""
        if self.pending:
            self.pending.append((index, memoryview(data), frame_size or len(data)))
            return
        try:
            n = self.sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError as exc:
            self.finish(Outcome.DISCONNECTED, f"send failed: {exc}")
            return
        if n == len(data):
            if index >= 0:
                self.send_perf[index] = time.perf_counter()
            return
        self.pending.append((index, memoryview(data)[n:], frame_size or len(data)))
        self.streamer._watch_writable(self)

    def on_writable(self) -> None:
        try:
            while self.pending:
                index, view, frame_size = self.pending[0]
                n = self.sock.send(view)
                if n < len(view):
                    self.pending[0] = (index, view[n:], frame_size)
                    return
                self.pending.popleft()
                if index >= 0:
                    self.send_perf[index] = time.perf_counter()
            self.streamer._unwatch_writable(self)
        except BlockingIOError:
            return
        except OSError as exc:
            self.finish(Outcome.DISCONNECTED, f"send failed: {exc}")
        except Exception as exc:  # a bug must end one stream, not escape into the hub
            self.finish(Outcome.PROTOCOL_ERROR, f"internal error: {exc!r}")

    def send_due(self, now: float) -> float | None:
        """Send every speech frame whose deadline has passed; return the next deadline (None when all sent)."""
        frames = self.clip.frames
        while self.next_frame < len(frames) and self.phase == Phase.STREAMING:
            deadline = self.t_start + self.next_frame * self.period
            if deadline > now:
                return deadline
            i = self.next_frame
            self.next_frame += 1
            self.frames_sent += 1
            self._write(i, frames[i])
            if i in self.turn_markers:  # the pause that follows carries it through the model
                self._write(-1, self.turn_markers[i][1])
        if self.phase == Phase.STREAMING:
            self._start_flush()
        return None

    def scheduled(self, n: int) -> np.ndarray:
        """Scheduled perf times of the first n speech frames (the plan is a fixed grid from the first deadline)."""
        return self.t_start + np.arange(n) * self.period

    def _start_flush(self) -> None:
        # The server echoes a Marker only once the model has stepped past it (docs/protocol.md §3), so a Marker is
        # followed by a burst of silence longer than the model's delay; the echo then marks the end of the
        # transcript. The burst is one write of bytes built once per clip, not one send per silence frame.
        self.phase = Phase.FLUSHING
        self._write(-1, wsframe.client_frame(P.encode_marker(self.marker_id)))
        self._write(-1, _silence_burst(self.clip.silence, self.flush_frames), len(self.clip.silence))
        if self.phase == Phase.DONE:
            return  # the writes failed and finished the stream: no echo to wait for
        self._flush_timer = self.streamer.loop.timer(self.flush_timeout_s)
        self._flush_timer.start(self._on_flush_timeout)

    def _on_flush_timeout(self) -> None:
        self.finish(Outcome.FLUSH_TIMEOUT, f"no Marker echo within {self.flush_timeout_s:g} s of the last audio")

    # -- receiving --------------------------------------------------------------------------------------------

    def on_readable(self) -> None:
        # Called by the hub for every message that arrives (the watcher calls this method directly: one Python
        # call per message, not two), so it guards itself: a bug must end one stream, not escape into the hub.
        buf, view = _RECV_BUFFER
        try:
            while self.phase != Phase.DONE:
                n = self.sock.recv_into(buf, RECV_BYTES)
                if not n:
                    self.finish(Outcome.DISCONNECTED, "server closed the connection without a close frame")
                    return
                now = time.perf_counter()
                if (n == buf[1] + 2 and buf[0] == 0x82 and not self.decode_steps and not self.reader.pending
                        and buf.startswith(_STEP_PAYLOAD, _STEP_PAYLOAD_AT, n)):
                    self._on_step(now)  # the common case: exactly one Step frame arrived
                else:
                    self._feed(view[:n], now)
                if n < RECV_BYTES:
                    return  # drained: the watcher calls again when more arrives (saves a failing recv per wake-up)
        except BlockingIOError:
            return
        except OSError as exc:
            self.finish(Outcome.DISCONNECTED, f"connection reset: {exc}")
        except Exception as exc:
            self.finish(Outcome.PROTOCOL_ERROR, f"internal error: {exc!r}")

    def receive(self, data: bytes) -> None:
        """Bytes that arrived before the stream was handed over (read together with the upgrade's reply)."""
        self._feed(data, time.perf_counter())

    def _feed(self, data, now: float) -> None:
        try:
            frames = self.reader.feed(data)
        except wsframe.FrameError as exc:
            self.finish(Outcome.PROTOCOL_ERROR, f"invalid WebSocket frame: {exc}")
            return
        for frame in frames:
            self._on_frame(frame, now)
            if self.phase == Phase.DONE:
                return

    def _on_frame(self, frame: wsframe.Frame, now: float) -> None:
        op = frame.opcode
        if op == wsframe.OP_BINARY:
            if not self.decode_steps and self.phase != Phase.AWAIT_READY and frame.payload.startswith(_STEP_PAYLOAD):
                self._on_step(now)
                return
            try:
                msg = P.decode_server_message(frame.payload)
            except P.ProtocolError as exc:
                self.finish(Outcome.PROTOCOL_ERROR, f"undecodable server message: {exc}")
                return
            self._on_message(msg, now)
        elif op == wsframe.OP_PING:
            self._write(-1, wsframe.client_frame(frame.payload, wsframe.OP_PONG))
        elif op == wsframe.OP_CLOSE:
            code, reason = wsframe.parse_close_payload(frame.payload)
            self.close_code = code
            detail = f"code {code}" if code is not None else "no status code"
            suffix = f": {reason}" if reason else ""
            self.finish(Outcome.DISCONNECTED, f"server closed the connection ({detail}{suffix})")
        elif op == wsframe.OP_TEXT:
            self.finish(Outcome.PROTOCOL_ERROR, "server sent a text frame (the protocol is binary msgpack)")

    def _on_message(self, msg: P.ServerMessage, now: float) -> None:
        if self.listener is not None:
            self.listener(self, msg, now)
        if self.phase == Phase.AWAIT_READY:
            if isinstance(msg, P.Ready):
                self.t_ready = now
                self.phase = Phase.STREAMING
                self.t_start = now
                self.ready.set()
                self.streamer._schedule(self, now)
            elif isinstance(msg, P.Error):
                rejected = P.NO_FREE_CHANNELS in msg.message
                self.finish(Outcome.REJECTED if rejected else Outcome.SERVER_ERROR, f"server: {msg.message}")
            else:
                self.finish(Outcome.PROTOCOL_ERROR, f"{type(msg).__name__} before Ready")
            return
        if self.t_first_msg is None and not isinstance(msg, P.Ready):
            self.t_first_msg = now
        if isinstance(msg, P.Step):
            self._on_step(now)
            if self.turn_starts and self.phase != Phase.DONE:
                self._on_pause_prediction(msg.prs, now)
        elif isinstance(msg, P.Word):
            if self.t_first_word is None:
                self.t_first_word = now
            self.words.append((msg.text, msg.start_time, now))
        elif isinstance(msg, P.EndWord):
            if self.words and (not self.end_words or self.end_words[-1][0] < len(self.words) - 1):
                self.end_words.append((len(self.words) - 1, msg.stop_time, now))
        elif isinstance(msg, P.Marker):
            if msg.id == self.marker_id and self.phase == Phase.FLUSHING:
                self.t_marker = now
                self.finish(Outcome.OK)
            elif self.turn_markers and 0 <= msg.id - self.marker_id - 1 < len(self.turn_flush_recv):
                self.turn_flush_recv[msg.id - self.marker_id - 1] = now
        elif isinstance(msg, P.Error):
            self.finish(Outcome.SERVER_ERROR, f"server: {msg.message}")

    def _on_step(self, now: float) -> None:
        if self.phase == Phase.AWAIT_READY:
            self.finish(Outcome.PROTOCOL_ERROR, "Step before Ready")
            return
        if self.t_first_msg is None:
            self.t_first_msg = now
        self.steps += 1
        if self.phase == Phase.STREAMING:
            backlog = (self.frames_sent - self.steps) * P.FRAME_SECONDS * 1000.0
            if self.backlog_max_ms is None or backlog > self.backlog_max_ms:
                self.backlog_max_ms = backlog

    def _on_pause_prediction(self, prs: tuple[float, ...], now: float) -> None:
        """End-of-turn detection (docs/metrics.md): the server sends one Step per frame it processed, in order,
        so the Step count says which frame (speech of a turn, or the silence after it) the prediction is about."""
        above = self.eot.above(prs)
        frame = self.steps - 1
        if above is None or frame >= self.clip.n_frames:
            return  # past the last pause: the flush's silence is no part of any turn
        k = max(bisect.bisect_right(self.turn_starts, frame) - 1, 0)
        if frame < self.clip.turns[k].end:
            if above and not self._eot_above:
                self.false_eot[k] += 1
        elif above and self.eot_recv[k] is None:
            self.eot_recv[k] = now
        self._eot_above = above

    # -- ending -----------------------------------------------------------------------------------------------

    def finish(self, outcome: Outcome, error: str = "") -> None:
        """Record the outcome once, release the socket, wake the session greenlet."""
        if self.phase == Phase.DONE:
            return
        self.phase = Phase.DONE
        self.outcome = outcome
        self.error = error
        if self._flush_timer is not None:
            self._flush_timer.stop()
            self._flush_timer.close()
        if self._streamer is not None:
            self._streamer._forget(self)
        if outcome == Outcome.OK:
            # A clean close (status 1000) lets the server release the slot at once. Its bytes must start where a
            # frame starts, or they would land inside that frame's payload: a frame already half in the socket is
            # completed first; frames not begun are dropped (the server has answered; the rest of the flush
            # silence is moot).
            close = wsframe.client_frame(wsframe.close_payload(1000), wsframe.OP_CLOSE)
            self._linger(bytes(self._rest_of_begun_frame()) + close)
        else:
            self._close_socket()
        self.pending.clear()
        self.ready.set()
        self.done.set()

    def _rest_of_begun_frame(self) -> memoryview:
        """The unsent bytes of the frame the socket holds part of (empty when the unsent bytes start a frame)."""
        if not self.pending:
            return memoryview(b"")
        _, view, frame_size = self.pending[0]
        return view[: len(view) % frame_size]  # the entry ends where a frame ends

    def _linger(self, tail: bytes) -> None:
        """Send `tail`, then close the socket; as the socket takes it, for LINGER_S at most (never blocks the hub).
        """
        try:
            n = self.sock.send(tail)
        except BlockingIOError:
            n = 0
        except OSError:
            n = len(tail)  # nothing more can be sent: close now
        if n == len(tail) or self._streamer is None:
            self._close_socket()
            return
        rest = memoryview(tail)[n:]
        loop = self._streamer.loop
        watcher, timer = loop.io(self.sock.fileno(), 2), loop.timer(LINGER_S)

        def stop() -> None:
            for w in (watcher, timer):
                w.stop()
                w.close()
            self._close_socket()

        def on_writable() -> None:
            nonlocal rest
            try:
                rest = rest[self.sock.send(rest):]
            except BlockingIOError:
                return
            except OSError:
                rest = rest[:0]
            if not rest:
                stop()

        watcher.start(on_writable)
        timer.start(stop)

    def _close_socket(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Streamer:
    """Drives all streams of one gevent hub (one per process in practice: Locust runs a single hub)."""

    _instances: dict[int, "Streamer"] = {}

    @classmethod
    def for_current_hub(cls) -> "Streamer":
        hub = gevent.get_hub()
        inst = cls._instances.get(id(hub))
        if inst is None or inst.loop is not hub.loop:
            inst = cls._instances[id(hub)] = cls(hub.loop)
        return inst

    def __init__(self, loop) -> None:
        self.loop = loop
        self._heap: list[tuple[float, int, Stream]] = []
        self._seq = itertools.count()
        self._tick: Any = None  # a libev timer (untyped)
        self.active = 0

    def add(self, stream: Stream) -> None:
        """Start receiving for a freshly upgraded connection (non-blocking socket)."""
        stream._streamer = self
        stream._read_watcher = self.loop.io(stream.sock.fileno(), 1)
        stream._read_watcher.start(stream.on_readable)
        self.active += 1

    def _schedule(self, stream: Stream, at: float) -> None:
        heapq.heappush(self._heap, (at, next(self._seq), stream))
        if self._tick is None:
            self._tick = self.loop.timer(TICK_S, TICK_S)
            self._tick.start(self._on_tick)
        self._on_tick()

    def _on_tick(self) -> None:
        heap = self._heap
        now = time.perf_counter()
        while heap and heap[0][0] <= now:
            _, _, stream = heapq.heappop(heap)
            if stream.phase != Phase.STREAMING:
                continue
            try:
                nxt = stream.send_due(now)
            except Exception as exc:  # a bug must end one stream, not the hub
                stream.finish(Outcome.PROTOCOL_ERROR, f"internal error while sending: {exc!r}")
                continue
            if nxt is not None:
                heapq.heappush(heap, (nxt, next(self._seq), stream))
        if not heap and self._tick is not None:
            self._tick.stop()
            self._tick.close()
            self._tick = None

    def _watch_writable(self, stream: Stream) -> None:
        if stream._write_watcher is None:
            stream._write_watcher = self.loop.io(stream.sock.fileno(), 2)
            stream._write_watcher.start(stream.on_writable)

    def _unwatch_writable(self, stream: Stream) -> None:
        if stream._write_watcher is not None:
            stream._write_watcher.stop()
            stream._write_watcher.close()
            stream._write_watcher = None

    def _forget(self, stream: Stream) -> None:
        for attr in ("_read_watcher", "_write_watcher"):
            w = getattr(stream, attr)
            if w is not None:
                w.stop()
                w.close()
                setattr(stream, attr, None)
        self.active -= 1


@functools.lru_cache(maxsize=64)
def _silence_burst(silence: bytes, frames: int) -> bytes:
    return silence * frames


# One receive buffer per process: every callback runs to completion in the hub, and FrameReader copies what it keeps.
_RECV_BYTEARRAY = bytearray(RECV_BYTES)
_RECV_BUFFER = (_RECV_BYTEARRAY, memoryview(_RECV_BYTEARRAY))
