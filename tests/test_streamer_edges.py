"""The streaming engine's edges, each against a real loopback server: how a stream closes while a frame is half in
its socket, and that a stream which fails leaves nothing armed in the hub."""

from __future__ import annotations

import queue
import socket
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
from yapbench.protocol import Audio, Marker, Ready, decode_client_message
from yapbench.samples import DEFAULT_MANIFEST
from yapbench.session import SessionConfig, run_session
from yapbench.streamer import PreparedClip, prepare_clip

# Silence frames after the Marker: ~19 MB, far more than the client's socket buffer (Linux grows it to 4 MB at most by
# default) and the server's (fixed small by SERVER_RCVBUF), so the burst is still being written when the server
# answers.
BIG_FLUSH = 2000
SERVER_RCVBUF = 64 * 1024  # set, not grown by the kernel's autotuning (which may reach 32 MB)
FILL_S = 1.0  # ample for the client to stream the 1.5 s clip at speed 50 and fill its socket with the burst


@pytest.fixture(scope="module")
def short_clip() -> PreparedClip:
    name = "real/en_ljspeech_LJ002-0020.wav"
    return prepare_clip(name, load_clip(DEFAULT_MANIFEST.parent / name).frames())


@contextmanager
def bare_server(handler: Callable) -> Iterator[str]:
    """A WebSocket server (the `websockets` library: it validates every frame it reads) on a loopback port, with a
    small fixed receive buffer: a client's bytes wait in the client while the handler does not read."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SERVER_RCVBUF)  # accepted sockets inherit it
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    with wss.serve(handler, sock=listener, max_size=None) as srv:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        yield f"127.0.0.1:{listener.getsockname()[1]}"
        srv.shutdown()


def wait_in_hub(event: threading.Event, timeout: float) -> bool:
    """Wait for another thread while the gevent hub keeps running (the stream's closing is done in the hub)."""
    deadline = time.monotonic() + timeout
    while not event.is_set() and time.monotonic() < deadline:
        gevent.sleep(0.02)
    return event.is_set()


def early_answer(clip: PreparedClip, deaf_after_answer_s: float) -> dict:
    """One session against a server that answers the Marker before reading anything (once the client's socket is
    full of the flush burst, so that a frame is half in it), reads nothing more for `deaf_after_answer_s`, then
    reads everything. Returns what the server saw: Audio messages, the close code, and whether the session's result
    came before the server read again."""
    marker_ids: queue.Queue[int] = queue.Queue()
    seen: dict = {"audio": 0}
    finished = threading.Event()

    def handler(ws):
        ws.send(msgpack.packb({"type": "Ready"}))
        marker_id = marker_ids.get(timeout=10)
        time.sleep(FILL_S)
        ws.send(msgpack.packb({"type": "Marker", "id": marker_id}))
        time.sleep(deaf_after_answer_s)
        seen["reading_again"] = True
        try:
            for data in ws:  # every frame must be a whole, valid message
                seen["audio"] += isinstance(decode_client_message(data), Audio)
        finally:
            seen["close_code"] = ws.close_code
            finished.set()

    def on_message(stream, msg, _now) -> None:
        if isinstance(msg, Ready):
            marker_ids.put(stream.marker_id)

    with bare_server(handler) as url:
        r = run_session(SessionConfig(url, speed=50, flush_frames=BIG_FLUSH), clip, listener=on_message)
        seen["result_first"] = "reading_again" not in seen
        assert wait_in_hub(finished, deaf_after_answer_s + 30)
    assert r.outcome == Outcome.OK, r.error
    return seen


def test_a_close_after_an_early_answer_completes_the_half_sent_frame_and_drops_the_rest(short_clip):
    """The client's close (1000) comes after whole frames: the half-sent one completed, those not begun dropped."""
    seen = early_answer(short_clip, deaf_after_answer_s=0.5)
    assert seen["close_code"] == 1000  # a clean close, read where a frame starts (spliced, it is 1002 or 1006)
    assert short_clip.n_frames <= seen["audio"] < short_clip.n_frames + BIG_FLUSH
    assert seen["result_first"]  # the session's result did not wait for the close


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
