"""Reference server engines and configuration: synthetic (transcripts, placeholders, step cost), sphinx, the
moshi-core word rules, TOML loading."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from yapbench.audio import load_clip
from yapbench.errors import UserError
from yapbench.protocol import FRAME_SAMPLES, Marker, Ready, Step, Word, encode_audio
from yapbench.server.config import CONFIG_DIR, load_config, with_overrides
from yapbench.server.engines.base import PAD, WORD_START
from yapbench.server.words import WordState
from yapbench.wsframe import client_frame

ROOT = Path(__file__).resolve().parent.parent
MID = ROOT / "samples" / "mid.wav"


def stream_clip(ws, pcm: np.ndarray, chunk: int = FRAME_SAMPLES, tail_frames: int = 12) -> list:
    ws.sock.sendall(b"".join(client_frame(encode_audio(pcm[i : i + chunk])) for i in range(0, pcm.size, chunk)))
    ws.send_marker(77)
    ws.send_frames(tail_frames)
    return ws.collect(lambda m: isinstance(m, Marker), timeout=30)


def words_of(msgs) -> list[str]:
    return [m.text for m in msgs if isinstance(m, Word)]


def test_word_state_follows_moshi_core():
    st, delay = WordState(), 2
    out = [st.push(tok, delay) for tok in (9, WORD_START, 10, 11, PAD, WORD_START, 12, PAD)]
    assert out[0] == (None, None)  # the first delay-1 steps are ignored
    assert out[1] == (None, None)  # a 0 with no pieces: no Word, no EndWord, but sets the start time
    assert out[4] == (([10, 11], 0.0), None)
    assert out[5] == (None, 0.32)  # EndWord at the next 0, dated (step 6 - delay) / 12.5
    assert out[7] == (([12], 0.32), None)


def test_synthetic_recognises_a_clip_behind_silence_and_odd_chunks(ref_server, raw_ws):
    s = ref_server(batch_size=2, step_ms=0)
    ws = raw_ws(s)
    assert ws.recv() == Ready()
    pcm = np.concatenate([np.zeros(24_000, dtype=np.float32), load_clip(MID).pcm])
    words = words_of(stream_clip(ws, pcm, chunk=24_000 // 7))
    assert " ".join(words).startswith("IF THE READER WILL EXCUSE ME")


def test_synthetic_emits_placeholders_for_unknown_audio(ref_server, raw_ws):
    s = ref_server(batch_size=2, step_ms=0)
    ws = raw_ws(s)
    assert ws.recv() == Ready()
    rng = np.random.default_rng(1)
    burst = (0.3 * rng.standard_normal(FRAME_SAMPLES * 4)).astype(np.float32)
    gap = np.zeros(FRAME_SAMPLES * 6, np.float32)
    pcm = np.concatenate([burst, gap, burst, gap])
    assert words_of(stream_clip(ws, pcm)) == ["word", "word"]


def test_step_cost_makes_a_saturated_server(ref_server, raw_ws, get):
    s = ref_server(batch_size=2, step_ms=100)
    ws = raw_ws(s)
    assert ws.recv() == Ready()
    ws.send_frames(8)  # 640 ms of audio
    start = time.monotonic()
    got = [ws.recv() for _ in range(8)]
    assert all(isinstance(m, Step) for m in got)
    assert time.monotonic() - start > 0.75  # slower than real time: 8 steps of 100 ms
    text = get(s, "/metrics")[1].decode()
    assert 'asr_model_step_duration_bucket{le="0.08"} 0' in text


def test_sphinx_recognises_real_speech(ref_server, raw_ws):
    s = ref_server(engine="sphinx", batch_size=1, step_ms=0, timeout=60)
    ws = raw_ws(s)
    assert ws.recv() == Ready()
    words = set(words_of(stream_clip(ws, load_clip(MID).pcm)))
    assert len(words & {"native", "country", "tedious", "led", "him", "painful", "circumstances", "which"}) >= 3


def test_bundled_configs_load_like_moshi_server(monkeypatch):
    en_fr = load_config(CONFIG_DIR / "config-stt-en_fr-hf.toml")
    assert (en_fr.batch_size, en_fr.asr_delay_in_tokens, en_fr.extra_heads) == (64, 6, 4)
    assert en_fr.authorized_ids == frozenset({"public_token"})
    en = load_config(CONFIG_DIR / "config-stt-en-hf.toml")
    assert (en.batch_size, en.asr_delay_in_tokens, en.extra_heads) == (16, 32, 0)


def test_config_env_expansion_conditioning_delay_and_yapbench_table(tmp_path, monkeypatch):
    monkeypatch.setenv("MY_KEY", "k-123")
    monkeypatch.delenv("UNSET_VAR", raising=False)
    src = (CONFIG_DIR / "config-stt-en_fr-hf.toml").read_text()
    src = src.replace('authorized_ids = ["public_token"]', 'authorized_ids = ["$MY_KEY"]')
    src = src.replace('log_dir = "$HOME/tmp/tts-logs"', 'log_dir = "/x$UNSET_VAR/y"')
    src = src.replace("asr_delay_in_tokens = 6", "asr_delay_in_tokens = 6\nconditioning_delay = 0.5")
    src = "[yapbench]\nengine = \"synthetic\"\nstep_ms = 3\n[yapbench.faults]\ndrop_words = 0.5\n" + src
    # TOML tables must not precede top-level keys: put ours at the end.
    head, _, rest = src.partition("static_dir")
    path = tmp_path / "c.toml"
    path.write_text("static_dir" + rest + "\n" + head)
    c = load_config(path)
    assert c.authorized_ids == frozenset({"k-123"}) and c.log_dir == "/x/y"
    assert c.asr_delay_in_tokens == int(0.5 * 12.5) + 1
    assert c.step_ms == 3 and c.faults.drop_words == 0.5
    assert with_overrides(c, step_ms=7.0, fault_drop_words=0.1).faults.drop_words == 0.1


@pytest.mark.parametrize("text, message", [
    ("static_dir='.'\nlog_dir=''\ninstance_name=''\nauthorized_ids=[]\n", "BatchedAsr"),
    ("not toml [", "not valid TOML"),
])
def test_bad_configs_say_why(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        load_config(path)
