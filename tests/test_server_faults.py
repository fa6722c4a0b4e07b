"""Reference server fault injection: each fault, and its determinism under a seed."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from yapbench.audio import load_clip
from yapbench.protocol import Error, Marker, ProtocolError, Ready, Step, Word, decode_server_message, encode_audio
from yapbench.wsframe import OP_BINARY, client_frame

ROOT = Path(__file__).resolve().parent.parent
MID = ROOT / "samples" / "mid.wav"


def kinds(msgs):
    return [m[0] if isinstance(m, tuple) else type(m).__name__ for m in msgs]


def test_exit_after_kills_the_process(ref_server, raw_ws):
    s = ref_server(fault_exit_after=1.0, step_ms=0)
    ws = raw_ws(s)
    assert ws.recv() == Ready()
    assert ws.collect(lambda m: False, timeout=5)[-1] == ("eof",)
    s.process.wait(5)
    assert s.process.returncode == 3


def test_error_mid_stream(ref_server, raw_ws):
    s = ref_server(fault_error_after_steps=3, step_ms=0)
    ws = raw_ws(s)
    assert ws.recv() == Ready()
    ws.send_frames(6)
    msgs = ws.collect(lambda m: False)
    assert kinds(msgs) == ["Step", "Step", "Step", "Error", "close", "eof"]
    assert msgs[3] == Error("fault injected: model error") and msgs[4][2] == b""


def test_stall_stops_reading_and_sending(ref_server, raw_ws):
    s = ref_server(fault_stall_after_steps=2, step_ms=0, ping_every_s=0.2)
    ws = raw_ws(s)
    assert ws.recv() == Ready()
    ws.send_frames(5)
    assert [type(ws.recv()) for _ in range(2)] == [Step, Step]
    assert ws.quiet_for(0.8)  # no Step, and not even a ping


def test_ready_delay(ref_server, raw_ws):
    s = ref_server(fault_ready_delay_ms=400, step_ms=0)
    start = time.monotonic()
    ws = raw_ws(s)
    ws.send_frames(2)  # sent before Ready: processed after it
    assert ws.recv() == Ready()
    assert time.monotonic() - start > 0.35
    assert isinstance(ws.recv(), Step)


def test_close_1011(ref_server, raw_ws):
    s = ref_server(fault_close_1011_after_steps=2, step_ms=0)
    ws = raw_ws(s)
    assert ws.recv() == Ready()
    ws.send_frames(4)
    msgs = ws.collect(lambda m: False)
    assert kinds(msgs) == ["Step", "Step", "close", "eof"] and msgs[2][1] == 1011


def test_garbage_every_k(ref_server, raw_ws):
    s = ref_server(fault_garbage_every=3, step_ms=0)
    ws = raw_ws(s)
    assert ws.recv() == Ready()
    ws.send_frames(3)
    assert isinstance(ws.recv(), Step)
    frame = ws.next_frame()
    assert frame.opcode == OP_BINARY
    with pytest.raises(ProtocolError):
        decode_server_message(frame.payload)
    assert isinstance(ws.recv(), Step)


def _words(ws) -> list[str]:
    assert ws.recv() == Ready()
    ws.sock.sendall(b"".join(client_frame(encode_audio(f)) for f in load_clip(MID).frames()))
    ws.send_marker(1)
    ws.send_frames(10)
    return [m.text for m in ws.collect(lambda m: isinstance(m, Marker), timeout=20) if isinstance(m, Word)]


def test_drop_words_is_deterministic_under_a_seed(ref_server, raw_ws):
    runs = []
    for seed in (7, 7, 8):
        s = ref_server(fault_drop_words=0.3, seed=seed, step_ms=0)
        runs.append(_words(raw_ws(s)))
    full = 35
    assert 10 < len(runs[0]) < full
    assert runs[0] == runs[1] and runs[0] != runs[2]


def test_fault_sessions_picks_the_same_sessions_for_a_seed(ref_server, raw_ws):
    outcomes = []
    for _ in range(2):
        s = ref_server(fault_error_after_steps=1, fault_sessions=0.5, seed=3, step_ms=0)
        got = []
        for _ in range(6):
            ws = raw_ws(s)
            assert ws.recv() == Ready()
            ws.send_frames(1)
            ws.recv()
            try:
                got.append(isinstance(ws.recv(0.3), Error))
            except TimeoutError:
                got.append(False)
            ws.close()
        outcomes.append(got)
    assert outcomes[0] == outcomes[1] and any(outcomes[0]) and not all(outcomes[0])
