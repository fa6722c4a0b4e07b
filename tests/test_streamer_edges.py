"""The streaming engine's edges, each against a real loopback server: how a stream closes while a frame is half in
its socket, and that a stream which fails leaves nothing armed in the hub."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import gevent
import msgpack
import pytest
import websockets.sync.server as wss

from yapbench.audio import load_clip
from yapbench.metrics import Outcome
from yapbench.protocol import Audio, Marker, decode_client_message
from yapbench.samples import DEFAULT_MANIFEST
from yapbench.session import SessionConfig, run_session
from yapbench.streamer import LINGER_S, PreparedClip, prepare_clip

# Silence frames after the Marker: ~15 MB, more than loopback's socket buffers hold (a few MB each way), so the
# burst is still being written when the server answers.
BIG_FLUSH = 2000


@pytest.fixture(scope="module")
def short_clip() -> PreparedClip:
    name = "real/en_ljspeech_LJ002-0020.wav"
    return prepare_clip(name, load_clip(DEFAULT_MANIFEST.parent / name).frames())


@contextmanager
def bare_server(handler: Callable) -> Iterator[str]:
    """A WebSocket server (the `websockets` library: it validates every frame it reads) on a loopback port."""
    with wss.serve(handler, "127.0.0.1", 0, max_size=None) as srv:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        yield f"127.0.0.1:{srv.socket.getsockname()[1]}"
        srv.shutdown()


def wait_in_hub(event: threading.Event, timeout: float) -> bool:
    """Wait for another thread while the gevent hub keeps running (the stream's closing is done in the hub)."""
    deadline = time.monotonic() + timeout
    while not event.is_set() and time.monotonic() < deadline:
        gevent.sleep(0.02)
    return event.is_set()


def test_a_close_after_an_early_answer_completes_the_half_sent_frame_and_drops_the_rest(short_clip):
    """The server answers the Marker while the flush silence is still being written: the client's close (1000) comes
    after whole frames, and the frames it had not begun are not sent."""
    seen: dict = {"audio": 0}
    finished = threading.Event()

    def handler(ws):
        ws.send(msgpack.packb({"type": "Ready"}))
        try:
            for data in ws:
                msg = decode_client_message(data)  # every frame must be a whole, valid message
                if isinstance(msg, Audio):
                    seen["audio"] += 1
                elif isinstance(msg, Marker):
                    ws.send(msgpack.packb({"type": "Marker", "id": msg.id}))
                    time.sleep(0.5)  # stop reading a while: the client's socket fills and a frame is half in it
        finally:
            seen["close_code"] = ws.close_code
            finished.set()

    with bare_server(handler) as url:
        r = run_session(SessionConfig(url, speed=50, flush_frames=BIG_FLUSH), short_clip)
        assert wait_in_hub(finished, 20)
    assert r.outcome == Outcome.OK, r.error
    assert seen["close_code"] == 1000  # a clean close, read where a frame starts (spliced, it is 1002 or 1006)
    assert short_clip.n_frames <= seen["audio"] < short_clip.n_frames + BIG_FLUSH


def test_a_close_the_server_does_not_make_room_for_is_given_up(short_clip):
    """The server answers, then reads nothing for longer than the client lingers: the session's result does not wait
    for the close, and the client gives the close up (the server then sees the connection end inside a frame, and
    no close frame)."""
    resumed, finished = threading.Event(), threading.Event()
    seen: dict = {}

    def handler(ws):
        ws.send(msgpack.packb({"type": "Ready"}))
        try:
            for data in ws:
                msg = decode_client_message(data)
                if isinstance(msg, Marker) and not resumed.is_set():
                    ws.send(msgpack.packb({"type": "Marker", "id": msg.id}))
                    time.sleep(LINGER_S + 2)
                    resumed.set()
        finally:
            seen["close_code"] = ws.close_code
            finished.set()

    with bare_server(handler) as url:
        r = run_session(SessionConfig(url, speed=50, flush_frames=BIG_FLUSH), short_clip)
        returned_before_the_server_read_again = not resumed.is_set()
        assert wait_in_hub(finished, LINGER_S + 30)
    assert r.outcome == Outcome.OK, r.error
    assert returned_before_the_server_read_again
    assert seen["close_code"] == 1006  # ended without a close frame: lingering forever would have completed it (1000)


def _hub_watchers() -> int:
    return gevent.get_hub().loop.activecnt


def _settled_watchers(baseline: int, timeout: float = 2.0) -> int:
    """Active watchers once the pacing timer has had a period to notice that its streams are gone."""
    deadline = time.monotonic() + timeout
    while _hub_watchers() > baseline and time.monotonic() < deadline:
        gevent.sleep(0.05)
    return _hub_watchers()


def test_no_timer_or_watcher_stays_armed_after_a_stream_fails_while_flushing(short_clip):
    """The server drops the connection right after the Marker, while the flush timer (30 s here) waits for its echo."""

    def handler(ws):
        ws.send(msgpack.packb({"type": "Ready"}))
        for data in ws:
            if isinstance(decode_client_message(data), Marker):
                ws.socket.close()  # no close frame: the client sees the connection end during the flush
                return

    baseline = _hub_watchers()
    with bare_server(handler) as url:
        r = run_session(SessionConfig(url, speed=50, flush_timeout_s=30), short_clip)
    assert r.outcome == Outcome.DISCONNECTED, r.error
    assert _settled_watchers(baseline) == baseline


@pytest.mark.parametrize("fault, outcome", [
    ({"fault_close_1011_after_steps": 5}, Outcome.DISCONNECTED),
    ({"fault_error_after_steps": 5}, Outcome.SERVER_ERROR),
    ({"fault_stall_after_steps": 5}, Outcome.FLUSH_TIMEOUT),
])
def test_no_timer_or_watcher_stays_armed_after_a_failed_stream(ref_server, short_clip, fault, outcome):
    server = ref_server(step_ms=1, **fault)
    baseline = _hub_watchers()
    r = run_session(SessionConfig(server.url, speed=20, flush_timeout_s=0.5), short_clip)
    assert r.outcome == outcome, r.error
    assert _settled_watchers(baseline) == baseline
