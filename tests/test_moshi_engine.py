"""The moshi engine (Kyutai's LM and Mimi from the `moshi` package) on CPU with a tiny configuration: the slot
semantics of one batched step, resets, weights found on disk or not, words through the text tokenizer, and a real
server running it."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("moshi")

from moshi.models import loaders  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from yapbench.errors import UserError  # noqa: E402
from yapbench.protocol import FRAME_SAMPLES, Marker, Ready, Step, Word, encode_audio  # noqa: E402
from yapbench.server.config import CONFIG_DIR  # noqa: E402
from yapbench.server.engines.base import PAD, WORD_START, ModelSpec  # noqa: E402
from yapbench.server.engines.moshi_build import find_weights, lm_kwargs, local_file  # noqa: E402
from yapbench.server.engines.moshi_engine import MoshiEngine, hash_uniform  # noqa: E402
from yapbench.server.engines.torch_engine import TextSampler  # noqa: E402
from yapbench.server.engines.torch_model import SttConfig  # noqa: E402
from yapbench.wsframe import client_frame  # noqa: E402

CONTEXT = 4  # LM and Mimi rings wrap after 4 steps
TINY_MODEL = {
    "audio_vocab_size": 65,
    "text_in_vocab_size": 101,
    "text_out_vocab_size": 100,
    "audio_codebooks": 8,
    "transformer": {"d_model": 64, "num_heads": 4, "num_layers": 2, "dim_feedforward": 256, "context": CONTEXT,
                    "max_period": 10000, "gating": "silu", "norm": "RmsNorm", "kv_repeat": 1},
    "extra_heads": {"num_heads": 4, "dim": 6},
}
# moshi's Mimi, shrunk (same structure: SEANet, a streaming transformer, 12.5 Hz, a split residual quantiser).
TINY_MIMI = {
    "seanet": {"dimension": 32, "n_filters": 4},
    "transformer": {"d_model": 32, "num_heads": 2, "num_layers": 1, "dim_feedforward": 64, "context": CONTEXT,
                    "input_dimension": 32, "output_dimensions": [32]},
    "quantizer": {"dimension": 16, "input_dimension": 32, "output_dimension": 32, "n_q": 8, "bins": 64},
}


def tiny_engine(batch_size: int = 2, model: dict | None = None, **options: object) -> MoshiEngine:
    spec = ModelSpec(batch_size, asr_delay_in_tokens=6, extra_heads=4, model=model or TINY_MODEL,
                     options={"device": "cpu", "mimi": TINY_MIMI, **options})
    return MoshiEngine(spec)


def frames(batch_size: int, seed: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal((batch_size, FRAME_SAMPLES))).astype(np.float32)


def test_shipped_configs_build_kyutais_lms() -> None:
    def lm(name: str) -> torch.nn.Module:
        table = tomllib.loads((CONFIG_DIR / name).read_text())["modules"]["asr"]["model"]
        return loaders.get_moshi_lm(None, lm_kwargs=lm_kwargs(SttConfig.from_model_table(table)), device="meta")

    one_b, big = lm("config-stt-en_fr-hf.toml"), lm("config-stt-en-hf.toml")
    for model, (lo, hi), heads, layers in ((one_b, (0.9e9, 1.1e9), 4, 16), (big, (2.4e9, 2.8e9), 0, 48)):
        assert lo < sum(p.numel() for p in model.parameters()) < hi
        assert len(model.extra_heads) == heads and len(model.transformer.layers) == layers
        assert model.depformer is None and model.num_audio_codebooks == 32
    assert one_b.transformer.layers[0].self_attn.context == 750 and big.transformer.layers[0].self_attn.context == 375


def test_step_shapes_ranges_and_placeholder_words() -> None:
    engine = tiny_engine(3)
    assert not engine.real_weights and engine.device.type == "cpu"
    out = engine.step(frames(3, 0), np.array([True, True, False]))
    assert out.tokens.shape == (3,) and out.tokens.dtype == np.int64 and out.tokens[2] == PAD
    assert ((out.tokens >= 0) & (out.tokens < 100)).all()
    assert out.prs is not None and out.prs.shape == (3, 4) and out.prs.dtype == np.float32
    assert ((out.prs > 0) & (out.prs < 1)).all()
    assert engine.detokenize([12, 34]) == "w12-34"


def test_no_extra_heads_means_no_prs() -> None:
    spec = ModelSpec(2, 6, 0, {**TINY_MODEL, "extra_heads": None}, options={"device": "cpu", "mimi": TINY_MIMI})
    assert MoshiEngine(spec).step(frames(2, 0), np.ones(2, bool)).prs is None


def run_slot0(engine: MoshiEngine, audio: list[np.ndarray], idle_after: int = -1, idle_steps: int = 0) -> list[tuple]:
    """Feed slot 0 `audio` one frame a step (slot 1 gets other audio), with `idle_steps` steps after frame
    `idle_after` in which only slot 1 is active; both slots' (token, prs) on slot 0's frames."""
    got = []
    for t, frame in enumerate(audio):
        batch = frames(2, 100 + t)
        batch[0] = frame
        out = engine.step(batch, np.ones(2, bool))
        got.append((out.tokens.copy(), out.prs.copy()))
        if t == idle_after:
            for k in range(idle_steps):
                engine.step(frames(2, 200 + k), np.array([False, True]))
    return got


def assert_same_outputs(a: list[tuple], b: list[tuple], slot: int = 0) -> None:
    assert [int(t[slot]) for t, _ in a] == [int(t[slot]) for t, _ in b]
    np.testing.assert_allclose(np.stack([p[slot] for _, p in a]), np.stack([p[slot] for _, p in b]),
                               rtol=1e-5, atol=1e-6)


def test_a_slot_computes_the_same_whatever_the_rest_of_the_batch_does() -> None:
    # Mimi's convolutions and transformer, the LM's KV cache, the position and the last text token all honour the
    # active mask: steps in which slot 0 has no frame leave it exactly where it was, rings wrapped or not.
    audio = [frames(1, t)[0] for t in range(CONTEXT + 3)]
    straight = run_slot0(tiny_engine(), audio)
    interrupted = run_slot0(tiny_engine(), audio, idle_after=CONTEXT, idle_steps=2)  # idle once the rings wrapped
    assert_same_outputs(straight, interrupted)
    assert len({int(t[0]) for t, _ in straight}) > 1  # not stuck on one token
    assert np.ptp([p[0] for _, p in straight], axis=0).max() > 1e-3


def test_reset_slot_starts_that_slot_over_and_leaves_the_others() -> None:
    audio = [frames(1, t)[0] for t in range(3)]
    fresh = run_slot0(tiny_engine(), audio)
    reset, kept = tiny_engine(), tiny_engine()
    for engine in (reset, kept):
        for t in range(CONTEXT + 1):
            engine.step(frames(2, 300 + t), np.ones(2, bool))
    reset.reset_slot(0)  # takes effect with the next step
    after_reset = run_slot0(reset, audio)
    assert_same_outputs(after_reset, fresh)  # slot 0 starts over like a new stream
    assert_same_outputs(after_reset, run_slot0(kept, audio), slot=1)  # slot 1 never noticed
    assert reset._pos.tolist() == [3, CONTEXT + 4]


def test_warmup_changes_no_slot() -> None:
    audio = [frames(1, t)[0] for t in range(3)]
    plain = run_slot0(tiny_engine(), audio)
    warmed = tiny_engine()
    warmed.warmup()
    warmed_run = run_slot0(warmed, audio)
    assert_same_outputs(warmed_run, plain)
    assert_same_outputs(warmed_run, plain, slot=1)


def test_random_mimi_tokens_follow_the_audio() -> None:
    engine = tiny_engine(2)
    with torch.no_grad():
        silence = engine.mimi.encode(torch.zeros(2, 1, FRAME_SAMPLES))[:, :, 0]
        speech = engine.mimi.encode(torch.from_numpy(frames(2, 0))[:, None, :])[:, :, 0]
    assert silence.shape == (2, 8) and torch.equal(silence[0], silence[1])
    assert ((speech >= 0) & (speech < 64)).all() and not torch.equal(speech[0], speech[1])


def test_random_weights_give_a_speech_like_word_rate_deterministically() -> None:
    vocab = 8000
    sampler = TextSampler(vocab, 0.2, 0.1, torch.device("cpu"))
    z = torch.randn(1000, vocab)
    z = (z - z.mean(-1, keepdim=True)) / z.std(-1, keepdim=True)
    ids = torch.arange(vocab)
    tokens = sampler(z, hash_uniform(z, ids))
    pad, start = (tokens == PAD).float().mean().item(), (tokens == WORD_START).float().mean().item()
    assert 0.65 < pad < 0.75 and 0.07 < start < 0.13 and len(tokens.unique()) > 150
    assert torch.equal(sampler(z, hash_uniform(z, ids)), tokens)  # the same logits, the same tokens


# --- weights -----------------------------------------------------------------------------------------------------


def test_weight_files_are_looked_up_never_downloaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    hf = "hf://kyutai/stt-1b-en_fr-candle/model.safetensors"
    assert local_file(hf) is None and local_file("") is None and local_file(str(tmp_path / "nope")) is None
    assert find_weights("auto", hf, hf, hf) is None  # nothing on disk: random weights
    with pytest.raises(UserError, match="not found: lm_model_file = 'hf://kyutai"):
        find_weights("real", hf, hf, hf)
    # The same name, once in the local cache (the layout huggingface_hub writes).
    snapshot = tmp_path / "hub" / "models--kyutai--stt-1b-en_fr-candle" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(b"x")
    (tmp_path / "hub" / "models--kyutai--stt-1b-en_fr-candle" / "refs").mkdir()
    (tmp_path / "hub" / "models--kyutai--stt-1b-en_fr-candle" / "refs" / "main").write_text("abc123")
    assert local_file(hf) == snapshot / "model.safetensors"
    mimi = tmp_path / "mimi.safetensors"
    mimi.write_bytes(b"x")
    with pytest.raises(UserError, match="text_tokenizer_file = 'tok.model'"):
        find_weights("auto", hf, f"file://{mimi}", "tok.model")  # an LM without its tokenizer is an error
    assert find_weights("random", hf, str(mimi), str(mimi)) is None
    with pytest.raises(UserError, match="weights = 'maybe'"):
        find_weights("maybe", hf, hf, hf)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Weights of the tiny models saved as moshi-server's files: LM and Mimi safetensors, a sentencepiece model."""
    import sentencepiece

    d = tmp_path_factory.mktemp("weights")
    source = tiny_engine(1, weights="random")
    save_file({k: v.contiguous() for k, v in source.lm.state_dict().items()}, str(d / "lm.safetensors"))
    save_file({k: v.contiguous() for k, v in source.mimi.state_dict().items()}, str(d / "mimi.safetensors"))
    corpus = d / "corpus.txt"
    corpus.write_text("\n".join(["the quick brown fox jumps over the lazy dog", "le renard brun saute",
                                 "speech to text streams words with timestamps"] * 20))
    sentencepiece.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(d / "tok"), vocab_size=40,
                                             model_type="unigram", minloglevel=2)
    return {"lm_model_file": str(d / "lm.safetensors"), "audio_tokenizer_file": str(d / "mimi.safetensors"),
            "text_tokenizer_file": str(d / "tok.model"), "lm_state": source.lm.state_dict()}


def test_real_weights_load_and_words_go_through_the_text_tokenizer(tiny_weights: dict) -> None:
    import sentencepiece

    files = {k: v for k, v in tiny_weights.items() if k.endswith("_file")}
    spec = ModelSpec(2, 6, 4, TINY_MODEL, options={"device": "cpu", "mimi": TINY_MIMI}, **files)
    engine = MoshiEngine(spec)
    assert engine.real_weights
    for key, value in engine.lm.state_dict().items():
        torch.testing.assert_close(value, tiny_weights["lm_state"][key])
    # Greedy decoding (temperature 0): two slots with the same audio give the same tokens.
    same = np.repeat(frames(1, 5), 2, axis=0)
    for _ in range(3):
        out = engine.step(same, np.ones(2, bool))
        assert out.tokens[0] == out.tokens[1]
    sp = sentencepiece.SentencePieceProcessor(model_file=files["text_tokenizer_file"])
    pieces = sp.encode("brown fox")
    assert engine.detokenize(pieces) == "brown fox"


def test_weights_of_another_model_are_refused_with_the_file_named(tiny_weights: dict) -> None:
    files = {k: v for k, v in tiny_weights.items() if k.endswith("_file")}
    bigger = {**TINY_MODEL, "transformer": {**TINY_MODEL["transformer"], "num_layers": 3}}
    spec = ModelSpec(1, 6, 4, bigger, options={"device": "cpu", "mimi": TINY_MIMI}, **files)
    with pytest.raises(UserError, match=r"lm\.safetensors: not the weights of the model the config describes"):
        MoshiEngine(spec)


# --- a real server -----------------------------------------------------------------------------------------------


def tiny_server_config(path: Path) -> Path:
    model_tables = """
[modules.asr.model]
audio_vocab_size = 65
text_in_vocab_size = 101
text_out_vocab_size = 100
audio_codebooks = 8

[modules.asr.model.transformer]
d_model = 64
num_heads = 4
num_layers = 2
dim_feedforward = 256
context = 4
max_period = 10000

[modules.asr.model.extra_heads]
num_heads = 4
dim = 6

[yapbench.engine_options]
device = "cpu"

[yapbench.engine_options.mimi.seanet]
dimension = 32
n_filters = 4

[yapbench.engine_options.mimi.transformer]
d_model = 32
num_heads = 2
num_layers = 1
dim_feedforward = 64
context = 4
input_dimension = 32
output_dimensions = [32]

[yapbench.engine_options.mimi.quantizer]
dimension = 16
input_dimension = 32
output_dimension = 32
n_q = 8
bins = 64
"""
    shipped = (CONFIG_DIR / "config-stt-en_fr-hf.toml").read_text()
    head = shipped[: shipped.index("[modules.asr.model]")]
    path.write_text(head + model_tables)
    assert tomllib.loads(path.read_text())["yapbench"]["engine_options"]["mimi"] == TINY_MIMI
    return path


def test_server_streams_steps_and_words_from_the_moshi_engine(tmp_path: Path, ref_server, raw_ws) -> None:
    config = tiny_server_config(tmp_path / "tiny.toml")
    s = ref_server(engine="moshi", config=str(config), batch_size=2, step_ms=0, timeout=120)
    ws = raw_ws(s)
    assert ws.recv() == Ready()
    rng = np.random.default_rng(3)
    pcm = (0.1 * rng.standard_normal(FRAME_SAMPLES * 30)).astype(np.float32)
    ws.sock.sendall(b"".join(client_frame(encode_audio(pcm[i : i + FRAME_SAMPLES]))
                             for i in range(0, pcm.size, FRAME_SAMPLES)))
    ws.send_marker(5)
    ws.send_frames(8)
    got = ws.collect(lambda m: isinstance(m, Marker), timeout=90)
    steps = [m for m in got if isinstance(m, Step)]
    assert len(steps) >= 30 and all(len(m.prs) == 4 and all(0 < p < 1 for p in m.prs) for m in steps)
    words = [m.text for m in got if isinstance(m, Word)]
    assert words and all(w.startswith("w") for w in words)
