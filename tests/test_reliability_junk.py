"""Junk thrown at the reference server (random bytes, oversized and text frames, half-open connections) never
disturbs the good streams beside it: same outcome, same words, latencies within a sane bound of a quiet baseline."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
import urllib.request

import gevent
import numpy as np
import pytest

from conftest import RawWS

from yapbench.audio import load_clip
from yapbench.metrics import Outcome, SessionResult
from yapbench.protocol import encode_audio
from yapbench.samples import DEFAULT_MANIFEST
from yapbench.session import SessionConfig, run_session
from yapbench.streamer import PreparedClip, prepare_clip
from yapbench.wsframe import OP_BINARY, OP_TEXT, client_frame

GOOD_STREAMS = 3
HELD = 6  # half-open connections kept open during the good sessions (each upgraded one holds a slot)
JUNK_ROUNDS = 200  # bound on the thrower's loop; it normally stops when the good sessions end


@pytest.fixture(scope="module")
def clip() -> PreparedClip:
    name = "real/en_librispeech_1272-128104-0000.wav"  # 5.9 s: at --speed 2 each session spans ~3 s of junk
    return prepare_clip(name, load_clip(DEFAULT_MANIFEST.parent / name).frames())


def good_sessions(url: str, clip: PreparedClip) -> list[SessionResult]:
    cfg = SessionConfig(url, speed=2.0)
    greenlets = [gevent.spawn(run_session, cfg, clip) for _ in range(GOOD_STREAMS)]
    gevent.joinall(greenlets, timeout=60, raise_error=True)
    return [g.value for g in greenlets]


class JunkThrower:
    """A thread that keeps opening bad connections of every kind until stopped (or JUNK_ROUNDS)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.held: list[socket.socket | RawWS] = []
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _raw(self, payload: bytes) -> None:
        with socket.create_connection((self.host, self.port), timeout=5) as s:
            s.sendall(payload)

    def _upgraded(self, data: bytes) -> None:
        ws = RawWS(self.host, self.port)
        try:
            ws.handshake()
            ws.sock.sendall(data)
        finally:
            ws.close()

    def _one_round(self) -> None:
        self._raw(os.urandom(2048))  # not HTTP at all
        self._raw(b"GET /api/asr-streaming HTTP/1.1\r\nHost: x\r\n" + b"X-Junk: " + b"a" * 100_000)  # huge head
        self._upgraded(client_frame(b"hello, I am text", OP_TEXT))
        self._upgraded(client_frame(os.urandom(1 << 20), OP_BINARY))  # 1 MiB of undecodable message
        noise = np.frombuffer(os.urandom(7680), np.float32)  # random floats: NaN, infinities, huge values
        self._upgraded(client_frame(encode_audio(noise), OP_BINARY))
        self._upgraded(b"\x82\xff" + struct.pack("!Q", 1 << 40) + os.urandom(4))  # announces a 1 TiB frame
        self._upgraded(os.urandom(4096))  # random bytes after the upgrade
        if len(self.held) < HELD:  # half-open: connect and never speak; upgrade and never send
            self.held.append(socket.create_connection((self.host, self.port), timeout=5))
            ws = RawWS(self.host, self.port)
            ws.handshake()
            self.held.append(ws)

    def _run(self) -> None:
        while not self._stop.is_set() and self.rounds < JUNK_ROUNDS:
            self._one_round()
            self.rounds += 1

    def wait_first_round(self, timeout_s: float = 30.0) -> None:
        """Until one round (half-open connections included) is in place; fails if the thrower died or hung."""
        deadline = time.monotonic() + timeout_s
        while self.rounds < 1 and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.rounds >= 1, "the junk thrower did not complete a round"

    def __enter__(self) -> "JunkThrower":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        for h in self.held:
            h.close()


def test_junk_never_disturbs_good_streams(ref_server, clip):
    server = ref_server(step_ms=1, batch_size=GOOD_STREAMS + HELD + 4)
    baseline = good_sessions(server.url, clip)
    assert all(r.outcome == Outcome.OK for r in baseline), [r.error for r in baseline]
    with JunkThrower(server.host, server.port) as junk:
        junk.wait_first_round()
        noisy = good_sessions(server.url, clip)
        rounds_during = junk.rounds
    assert rounds_during >= 2, rounds_during  # the junk really overlapped the good sessions
    assert [r.outcome for r in noisy] == [Outcome.OK] * GOOD_STREAMS, [r.error for r in noisy]
    assert {r.transcript for r in noisy} == {r.transcript for r in baseline} and baseline[0].transcript
    quiet_first_word = max(r.first_word_ms for r in baseline)
    quiet_finalize = max(r.finalize_ms for r in baseline)
    # Generous bounds (a loaded 2-core machine): junk that stalled the server would cost seconds, not this.
    assert all(r.first_word_ms < 3 * quiet_first_word + 500 for r in noisy), [r.first_word_ms for r in noisy]
    assert all(r.finalize_ms < 3 * quiet_finalize + 500 for r in noisy), [r.finalize_ms for r in noisy]
    assert all(r.send_lag_ms.max() < 500 for r in noisy)
    with urllib.request.urlopen(server.http_url + "/api/modules_info", timeout=5) as answer:
        assert answer.status == 200
    assert server.alive()
