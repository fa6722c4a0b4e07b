"""The torch engine on CPU with a tiny configuration: shapes, streaming state, ring KV cache, slots, word traffic."""

from __future__ import annotations

import tomllib

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from yapbench.server.config import CONFIG_DIR  # noqa: E402
from yapbench.server.engines.base import PAD, WORD_START, ModelSpec  # noqa: E402
from yapbench.server.engines.torch_engine import TorchEngine  # noqa: E402
from yapbench.server.engines.torch_model import SttConfig  # noqa: E402

CONTEXT = 4
TINY_MODEL = {
    "audio_vocab_size": 2049,
    "text_in_vocab_size": 8001,
    "text_out_vocab_size": 8000,
    "audio_codebooks": 32,
    "transformer": {"d_model": 64, "num_heads": 4, "num_layers": 2, "dim_feedforward": 256, "context": CONTEXT,
                    "max_period": 10000, "gating": "silu", "norm": "RmsNorm", "kv_repeat": 1},
    "extra_heads": {"num_heads": 4, "dim": 6},
}


def tiny_engine(batch_size: int = 3, seed: int = 0, **options: object) -> TorchEngine:
    spec = ModelSpec(batch_size, asr_delay_in_tokens=6, extra_heads=4, model=TINY_MODEL, seed=seed,
                     options={"device": "cpu", **options})
    return TorchEngine(spec)


def frames(batch_size: int, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal((batch_size, 1920))).astype(np.float32)


def state(engine: TorchEngine, slot: int) -> list[torch.Tensor]:
    m = engine.model
    return [m.cache_k[:, slot].clone(), m.cache_v[:, slot].clone(), m.pos[slot].clone(), m.last_text[slot].clone()]


def assert_same(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)


def test_shipped_configs_give_the_real_architectures() -> None:
    def model(name: str) -> dict:
        return tomllib.loads((CONFIG_DIR / name).read_text())["modules"]["asr"]["model"]

    one_b = SttConfig.from_model_table(model("config-stt-en_fr-hf.toml"))
    assert (one_b.d_model, one_b.num_layers, one_b.num_heads, one_b.context) == (2048, 16, 16, 750)
    assert (one_b.head_dim, one_b.ff_hidden, one_b.extra_heads, one_b.text_out_vocab_size) == (128, 5376, 4, 8000)
    assert one_b == SttConfig()
    big = SttConfig.from_model_table(model("config-stt-en-hf.toml"))
    assert (big.num_layers, big.num_heads, big.context, big.extra_heads) == (48, 32, 375, 0)
    with pytest.raises(ValueError, match="kv_repeat"):
        SttConfig.from_model_table({"transformer": {"kv_repeat": 2}})


def test_step_shapes_and_ranges() -> None:
    engine = tiny_engine(3)
    assert engine.dtype == torch.float32 and engine.device.type == "cpu"
    out = engine.step(frames(3, 0), np.ones(3, bool))
    assert out.tokens.shape == (3,) and out.tokens.dtype == np.int64
    assert ((out.tokens >= 0) & (out.tokens < 8000)).all()
    assert out.prs is not None and out.prs.shape == (3, 4) and out.prs.dtype == np.float32
    assert ((out.prs > 0) & (out.prs < 1)).all()
    assert engine.detokenize([12, 345]) == "w12-345"


def test_no_extra_heads_means_no_prs() -> None:
    spec = ModelSpec(2, 6, 0, {**TINY_MODEL, "extra_heads": None}, options={"device": "cpu"})
    assert TorchEngine(spec).step(frames(2, 0), np.ones(2, bool)).prs is None


def test_ring_cache_writes_one_entry_per_step_and_wraps() -> None:
    engine = tiny_engine(1)
    m = engine.model
    for t in range(CONTEXT + 3):
        before = m.cache_k[:, 0].clone()
        engine.step(frames(1, t), np.ones(1, bool))
        changed = (m.cache_k[:, 0] != before).any(dim=-1).any(dim=0).any(dim=0)  # (layers, heads, ring, dim) -> ring
        assert changed.tolist() == [i == t % CONTEXT for i in range(CONTEXT)]
    assert int(m.pos[0]) == CONTEXT + 3


def test_attention_sees_only_written_entries_until_the_ring_wraps() -> None:
    def logits_after(steps: int, poison_entry: int | None) -> torch.Tensor:
        torch.manual_seed(0)
        engine = tiny_engine(1)
        for t in range(steps - 1):
            engine.step(frames(1, t), np.ones(1, bool))
        if poison_entry is not None:
            engine.model.cache_k[:, 0, :, poison_entry] = 100.0
            engine.model.cache_v[:, 0, :, poison_entry] = 100.0
        audio = engine.tokenizer(torch.from_numpy(frames(1, 99)))
        logits, _ = engine.model.step(audio, torch.ones(1, dtype=torch.bool))
        return logits

    # Two steps done, the third writes entry 2: entry 3 is unwritten and must not matter.
    assert torch.equal(logits_after(3, None), logits_after(3, 3))
    # After wrapping every entry is in the window: the oldest one matters.
    assert not torch.equal(logits_after(CONTEXT + 2, None), logits_after(CONTEXT + 2, (CONTEXT + 2) % CONTEXT))


def test_inactive_slots_are_left_untouched_and_read_pad() -> None:
    engine = tiny_engine(3)
    engine.step(frames(3, 0), np.ones(3, bool))
    frozen = state(engine, 1)
    active = np.array([True, False, True])
    for t in range(CONTEXT + 2):
        out = engine.step(frames(3, t + 1), active)
        assert out.tokens[1] == PAD
    assert_same(state(engine, 1), frozen)
    assert engine.model.pos.tolist() == [CONTEXT + 3, 1, CONTEXT + 3]


def test_active_rows_do_not_depend_on_inactive_rows() -> None:
    a, b = tiny_engine(2), tiny_engine(2)
    fa, fb = frames(2, 0), frames(2, 0)
    fb[1] = frames(1, 7)[0]  # different junk in the inactive row
    active = np.array([True, False])
    for engine, f in ((a, fa), (b, fb)):
        torch.manual_seed(0)  # the same sampling noise for both
        engine.step(f, active)
    assert_same(state(a, 0), state(b, 0))


def test_reset_slot_clears_that_slot_only() -> None:
    engine = tiny_engine(3)
    for t in range(3):
        engine.step(frames(3, t), np.ones(3, bool))
    others = [state(engine, 0), state(engine, 2)]
    engine.reset_slot(1)
    m = engine.model
    assert not m.cache_k[:, 1].any() and not m.cache_v[:, 1].any()
    assert int(m.pos[1]) == 0 and int(m.last_text[1]) == engine.cfg.text_initial_token
    assert_same(state(engine, 0), others[0])
    assert_same(state(engine, 2), others[1])
    # A reset slot starts over exactly like a fresh engine's slot.
    fresh = tiny_engine(3)
    f = frames(3, 42)
    only_1 = np.array([False, True, False])
    engine.step(f, only_1)
    fresh.step(f, only_1)
    torch.testing.assert_close(m.cache_k[:, 1], fresh.model.cache_k[:, 1])
    assert int(m.pos[1]) == 1


def test_warmup_changes_no_slot() -> None:
    engine = tiny_engine(2)
    before = [state(engine, 0), state(engine, 1)]
    engine.warmup()
    assert_same(state(engine, 0), before[0])
    assert_same(state(engine, 1), before[1])


def test_word_traffic_is_a_few_words_per_second() -> None:
    torch.manual_seed(0)
    engine = tiny_engine(4)
    tokens = np.stack([engine.step(frames(4, t), np.ones(4, bool)).tokens for t in range(300)])
    pad, start = (tokens == PAD).mean(), (tokens == WORD_START).mean()
    pieces = 1.0 - pad - start
    assert 0.6 < pad < 0.8 and 0.05 < start < 0.15 and 0.15 < pieces < 0.25
    assert not np.isin(tokens, [1, 2]).any()  # ids reserved by the token convention
    # Word/EndWord come from the pieces: about 0.2 a frame -> ~2.5 pieces per second per stream.
    assert len(np.unique(tokens[tokens >= 4])) > 100  # tokens vary: not one id stuck per slot


def test_stand_in_tokenizer_follows_the_audio() -> None:
    engine = tiny_engine(2)
    silence = engine.tokenizer(torch.zeros(2, 1920))
    assert silence.shape == (2, 32) and torch.equal(silence[0], silence[1]) and len(silence.unique()) == 1
    speech = engine.tokenizer(torch.from_numpy(frames(2, 0)))
    assert ((speech >= 0) & (speech < 2048)).all() and len(speech.unique()) > 16


def test_word_rates_must_leave_room_for_padding() -> None:
    with pytest.raises(ValueError, match="word_rate"):
        tiny_engine(1, word_rate=0.8, word_start_rate=0.3)
