"""One slot of the batch (moshi's `Channel`) and what the model loop needs from whoever holds it."""

from __future__ import annotations

import random
from collections import deque
from typing import Protocol

import numpy as np

from ..protocol import FRAME_SAMPLES, ClientMessage, ServerMessage
from .config import FaultConfig
from .words import WordState

_EMPTY = np.zeros(0, dtype=np.float32)


class Sink(Protocol):
    """The holder of a slot: a WebSocket connection, or an offline POST transcription."""

    conn_id: int
    out_closed: bool  # the send side is gone (moshi: out_tx.is_closed()); the loop releases the slot

    def queue(self, kind: str, payload: bytes, msg: ServerMessage | None) -> None:
        """Buffer one outbound message (msg is None for Step, the only message built straight as bytes)."""

    def flush(self) -> None:
        """Write what `queue` buffered (one socket write per step per connection)."""

    def released(self, close_code: int | None | bool) -> None:
        """The slot is gone. False: drop the socket without a close frame (what moshi does); None: a close frame
        without status code first; an int: a close frame with that code first."""


class SampleBuffer:
    """The slot's PCM deque (`Channel::extend_data`): one 1920-sample frame out per step, partial frames kept."""

    __slots__ = ("data", "pos")

    def __init__(self) -> None:
        self.data = _EMPTY
        self.pos = 0

    @property
    def size(self) -> int:
        return self.data.size - self.pos

    def extend(self, pcm: np.ndarray) -> np.ndarray | None:
        if self.pos == self.data.size and pcm.size >= FRAME_SAMPLES:  # empty: no copy (the usual 80 ms message)
            self.data, self.pos = pcm, FRAME_SAMPLES
            return pcm if pcm.size == FRAME_SAMPLES else pcm[:FRAME_SAMPLES]
        if pcm.size:
            self.data = np.concatenate((self.data[self.pos :], pcm)) if self.size else pcm
            self.pos = 0
        return self.take()

    def take(self) -> np.ndarray | None:
        if self.data.size - self.pos < FRAME_SAMPLES:
            return None
        frame = self.data[self.pos : self.pos + FRAME_SAMPLES]
        self.pos += FRAME_SAMPLES
        return frame

    def clear(self) -> None:
        self.data, self.pos = _EMPTY, 0


class SessionFaults:
    """The faults that hit one session, drawn once from (seed, session number) so reruns hit the same sessions."""

    __slots__ = ("error_after", "stall_after", "close_after", "after_steps", "drop_words", "ready_delay_ms",
                 "garbage_every", "rng")

    def __init__(self, faults: FaultConfig, seed: int, session: int) -> None:
        self.rng = random.Random(seed * 1_000_003 + session)
        hit = faults.any_session_fault and self.rng.random() < faults.sessions
        self.error_after = faults.error_after_steps if hit else 0
        self.stall_after = faults.stall_after_steps if hit else 0
        self.close_after = faults.close_1011_after_steps if hit else 0
        self.after_steps = bool(self.error_after or self.stall_after or self.close_after)  # checked every step
        self.drop_words = faults.drop_words if hit else 0.0
        self.ready_delay_ms = faults.ready_delay_ms if hit else 0.0
        self.garbage_every = faults.garbage_every if hit else 0

    def drop_word(self) -> bool:
        return self.drop_words > 0 and self.rng.random() < self.drop_words


class Slot:
    __slots__ = ("index", "sink", "channel_id", "inbox", "buf", "steps", "words", "recv_done", "held", "stalled",
                 "faults", "drop_next_end")

    def __init__(self, index: int, sink: Sink, channel_id: int, faults: SessionFaults) -> None:
        self.index = index
        self.sink = sink
        self.channel_id = channel_id
        self.inbox: deque[ClientMessage] = deque()  # unbounded, like the real server's mpsc channel
        self.buf = SampleBuffer()
        self.steps = 0  # frames processed (observed into asr_connection_num_steps on release)
        self.words = WordState()
        self.recv_done = False  # the receive side ended: release once the inbox is drained
        self.held = False  # not yet given to the loop (delayed-Ready fault)
        self.stalled = False  # stall fault: the loop leaves it alone
        self.faults = faults
        self.drop_next_end = False
