"""Reference server, docs/protocol.md §2-§5: the streaming protocol over a real socket, frame by frame."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from yapbench.audio import load_clip
from yapbench.protocol import FRAME_SAMPLES, EndWord, Marker, Ready, Step, Word, encode_audio
from yapbench.samples import load_manifest
from yapbench.wsframe import OP_CLOSE, OP_PING, OP_TEXT, client_frame

ROOT = Path(__file__).resolve().parent.parent
MID = ROOT / "samples" / "mid.wav"


@pytest.fixture(scope="module")
def server():
    from yapbench.server.launch import start_server

    with start_server(batch_size=8, step_ms=0, event_log=True) as s:
        yield s


def steps(msgs):
    return [m for m in msgs if isinstance(m, Step)]


def test_ready_first_then_one_step_per_frame(server, raw_ws):
    ws = raw_ws(server)
    assert ws.recv() == Ready()
    assert ws.quiet_for(0.2)  # no audio, no step
    ws.send_frames(3)
    got = [ws.recv() for _ in range(3)]
    assert all(isinstance(m, Step) and len(m.prs) == 4 and m.buffered_pcm == 0 for m in got)
    assert [m.step_idx for m in got] == sorted({m.step_idx for m in got})
    assert all(0.0 <= p <= 1.0 for m in got for p in m.prs)
    assert ws.quiet_for(0.2)


def test_partial_frames_stay_buffered(server, raw_ws):
    ws = raw_ws(server)
    assert ws.recv() == Ready()
    ws.send_audio(np.zeros(1000, dtype=np.float32))
    assert ws.quiet_for(0.2)
    ws.send_audio(np.zeros(920 + 500, dtype=np.float32))
    step = ws.recv()
    assert isinstance(step, Step) and step.buffered_pcm == 500
    assert ws.quiet_for(0.2)


def test_big_chunk_drains_one_frame_per_step(server, raw_ws):
    ws = raw_ws(server)
    assert ws.recv() == Ready()
    ws.send_audio(np.zeros(5 * FRAME_SAMPLES, dtype=np.float32))
    got = [ws.recv() for _ in range(5)]
    assert [m.buffered_pcm for m in got] == [4 * 1920, 3 * 1920, 2 * 1920, 1920, 0]


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_frames_whole_split_or_coalesced_decode_alike_on_both_event_loops(ref_server, raw_ws, loop):
    server = ref_server(batch_size=2, step_ms=0, asyncio_loop=loop == "asyncio")
    ws = raw_ws(server)
    assert ws.recv() == Ready()
    clip = load_clip(MID).frames()
    frames = [client_frame(encode_audio(f)) for f in clip]
    # one frame per read (the receive fast path), one split across reads, then frames sharing reads
    ws.sock.sendall(frames[0])
    ws.sock.sendall(frames[1][:100])
    time.sleep(0.05)
    ws.sock.sendall(frames[1][100:] + frames[2] + frames[3][:5000])
    time.sleep(0.05)
    ws.sock.sendall(frames[3][5000:])
    for f in frames[4:]:
        ws.sock.sendall(f)
    ws.send_marker(9)
    ws.send_frames(12)
    msgs = ws.collect(lambda m: isinstance(m, Marker))
    assert len(steps(msgs)) == len(frames) + 6
    transcript = next(s for s in load_manifest() if s.name == "mid.wav").transcript.split()
    assert [m.text for m in msgs if isinstance(m, Word)] == transcript  # the samples arrived exact: clip recognised


def test_small_messages_take_one_loop_iteration_each(server, raw_ws):
    ws = raw_ws(server)
    assert ws.recv() == Ready()
    chunk = encode_audio(np.zeros(480, dtype=np.float32))
    ws.sock.sendall(b"".join(client_frame(chunk) for _ in range(8)))
    assert [type(ws.recv()) for _ in range(2)] == [Step, Step]
    assert ws.quiet_for(0.2)


def test_marker_comes_back_after_the_delay_in_global_steps(server, raw_ws):
    ws = raw_ws(server)
    assert ws.recv() == Ready()
    ws.send_frames(10)
    ws.send_marker(42)
    ws.send_frames(12)
    msgs = ws.collect(lambda m: isinstance(m, Marker))
    assert msgs[-1] == Marker(42)
    assert len(steps(msgs)) == 10 + 6  # consumed at loop step 10, due at 10 + asr_delay_in_tokens


def test_marker_counts_frames_still_buffered(server, raw_ws):
    ws = raw_ws(server)
    assert ws.recv() == Ready()
    ws.send_audio(np.zeros(4 * FRAME_SAMPLES, dtype=np.float32))  # one step, three frames left buffered
    ws.send_marker(1)
    ws.send_frames(12)
    msgs = ws.collect(lambda m: isinstance(m, Marker))
    assert len(steps(msgs)) == 1 + 6 + 3


def test_marker_without_following_audio_never_returns_on_an_idle_server(server, raw_ws):
    ws = raw_ws(server)
    assert ws.recv() == Ready()
    ws.send_frames(2)
    ws.send_marker(5)
    assert [type(ws.recv()) for _ in range(2)] == [Step, Step]
    assert ws.quiet_for(0.5)


def test_text_frames_are_ignored(server, raw_ws):
    ws = raw_ws(server)
    assert ws.recv() == Ready()
    ws.send(b'{"type": "Audio", "pcm": [0.0]}', OP_TEXT)
    assert ws.quiet_for(0.2)
    ws.send_frames(1)
    assert isinstance(ws.recv(), Step)


@pytest.mark.parametrize("bad", [b"\x81\xa4type\xa5Flush", b"not msgpack at all \xc1"])
def test_unknown_or_undecodable_message_drops_the_connection_after_queued_input(server, raw_ws, bad):
    ws = raw_ws(server)
    assert ws.recv() == Ready()
    frame = client_frame(encode_audio(np.zeros(FRAME_SAMPLES, dtype=np.float32)))
    ws.sock.sendall(frame * 3 + client_frame(bad))
    msgs = ws.collect(lambda m: False, timeout=5)
    assert len(steps(msgs)) == 3
    assert msgs[-1] == ("eof",)  # no Error, no close frame
    assert not any(isinstance(m, tuple) and m[0] == "close" for m in msgs)


def test_init_resets_the_slot_and_sends_ready_again(server, raw_ws):
    ws = raw_ws(server)
    assert ws.recv() == Ready()
    ws.send(b"\x81\xa4type\xa4Init")
    assert ws.recv() == Ready()


def test_pings_are_answered(server, raw_ws):
    ws = raw_ws(server)
    assert ws.recv() == Ready()
    ws.send(b"hello", OP_PING)
    assert ws.recv() == ("pong", b"hello")


def test_client_close_releases_the_slot_and_drops_the_socket(ref_server, raw_ws, get):
    s = ref_server(batch_size=1, step_ms=0)
    ws = raw_ws(s)
    assert ws.recv() == Ready()
    ws.send(b"\x03\xe8", OP_CLOSE)
    assert ws.recv() == ("eof",)  # tungstenite queues the close reply but nothing flushes it
    again = raw_ws(s)
    assert again.recv() == Ready()


def test_close_reply_goes_out_when_queued_input_produces_output(server, raw_ws):
    ws = raw_ws(server)
    assert ws.recv() == Ready()
    ws.sock.sendall(client_frame(encode_audio(np.zeros(3 * FRAME_SAMPLES, dtype=np.float32)))
                    + client_frame(b"\x03\xe8", OP_CLOSE))
    msgs = ws.collect(lambda m: False, timeout=5)
    assert [m[0] if isinstance(m, tuple) else type(m) for m in msgs] in (["close", "eof"], [Step, "close", "eof"])


def test_words_follow_moshi_semantics(server, raw_ws):
    clip = load_clip(MID)
    transcript = next(s for s in load_manifest() if s.name == "mid.wav").transcript.split()
    ws = raw_ws(server)
    assert ws.recv() == Ready()
    ws.sock.sendall(b"".join(client_frame(encode_audio(f)) for f in clip.frames()))
    ws.send_marker(9)
    ws.send_frames(10)
    msgs = ws.collect(lambda m: isinstance(m, Marker))
    words = [m for m in msgs if isinstance(m, Word)]
    ends = [m for m in msgs if isinstance(m, EndWord)]
    assert [w.text for w in words] == transcript
    assert len(ends) == len(words) - 1  # the last word gets no EndWord: nothing starts after it
    assert all(a.start_time <= b.start_time for a, b in zip(words, words[1:]))
    assert all(e.stop_time >= w.start_time for w, e in zip(words, ends))
    assert words[0].start_time < 0.5 and words[-1].start_time < clip.duration_s
    assert all(round(w.start_time / 0.08, 6).is_integer() for w in words)  # times are on the 80 ms grid


def test_2_6b_config_sends_no_steps_and_uses_its_delay(ref_server, raw_ws):
    s = ref_server(config="config-stt-en-hf.toml", step_ms=0)
    ws = raw_ws(s)
    assert ws.recv() == Ready()
    ws.send_frames(5)
    ws.send_marker(3)
    ws.send_frames(40)
    assert ws.collect(lambda m: isinstance(m, Marker)) == [Marker(3)]  # no Step at all, marker after 5 + 32


def test_keepalive_ping_then_short_timeout(ref_server, raw_ws):
    s = ref_server(batch_size=1, step_ms=0, ping_every_s=0.3)
    ws = raw_ws(s)
    assert ws.recv() == Ready()
    start = time.monotonic()
    assert ws.recv(2) == ("ping", b"")
    assert 0.25 < time.monotonic() - start < 0.6
    msgs = ws.collect(lambda m: False, timeout=3)  # we never answer: cut after 2 x ping interval
    assert msgs[-1] == ("eof",)
    assert 0.55 < time.monotonic() - start < 1.5


def test_long_timeout_without_audio(ref_server, raw_ws):
    s = ref_server(batch_size=1, step_ms=0, ping_every_s=0.4, long_timeout_s=1.0)
    ws = raw_ws(s)
    assert ws.recv() == Ready()
    ws.send_frames(1)
    assert isinstance(ws.recv(), Step)
    start = time.monotonic()
    while time.monotonic() - start < 3:
        ws.send(b"keepalive", OP_TEXT)  # frames keep the short timeout away, but are not audio
        try:
            if ws.recv(0.2) == ("eof",):
                break
        except socket.timeout:
            pass
    assert 0.9 < time.monotonic() - start < 1.6


def test_event_log_matches_what_the_client_received(server, raw_ws):
    ws = raw_ws(server)
    assert ws.recv() == Ready()
    ws.send_frames(4)
    received = []
    for _ in range(4):
        msg = ws.recv()
        received.append((time.time(), msg))
    time.sleep(0.5)  # the log is flushed every 0.2 s
    records = [json.loads(line) for line in server.event_log.read_text().splitlines()]
    accept = [r for r in records if r["ev"] == "accept"][-1]
    sends = [r for r in records if r["ev"] == "send" and r["conn"] == accept["conn"]]
    assert [r["type"] for r in sends] == ["Ready", "Step", "Step", "Step", "Step"]
    for (t_recv, _), record in zip(received, sends[1:]):
        assert 0 <= t_recv - record["t"] < 0.05
