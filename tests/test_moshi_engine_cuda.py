"""The moshi engine on a CUDA GPU (skipped elsewhere): the captured step computes what eager PyTorch computes, the
slot semantics hold under the graph, and both shipped models build full size in bf16."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("moshi")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

from test_moshi_engine import TINY_MIMI, TINY_MODEL, assert_same_outputs, frames, run_slot0  # noqa: E402

from yapbench.server.config import CONFIG_DIR, load_config  # noqa: E402
from yapbench.server.engines.base import PAD, ModelSpec  # noqa: E402
from yapbench.server.engines.moshi_engine import MoshiEngine  # noqa: E402


def cuda_engine(graph: bool, dtype: str = "float32", batch_size: int = 2) -> MoshiEngine:
    options = {"device": "cuda", "cuda_graph": graph, "dtype": dtype, "mimi": TINY_MIMI}
    return MoshiEngine(ModelSpec(batch_size, 6, 4, TINY_MODEL, options=options))


def test_graph_replay_matches_eager() -> None:
    eager, graphed = cuda_engine(False), cuda_engine(True)
    audio = [frames(1, t)[0] for t in range(7)]
    runs = [run_slot0(e, audio, idle_after=4, idle_steps=2) for e in (eager, graphed)]
    assert graphed._forward_text._graph is not None and eager._forward_text._graph is None
    for slot in (0, 1):
        assert_same_outputs(runs[0], runs[1], slot=slot)


def test_graph_keeps_inactive_slots_and_honours_reset() -> None:
    audio = [frames(1, t)[0] for t in range(7)]
    straight = run_slot0(cuda_engine(True), audio)
    engine = cuda_engine(True)
    assert_same_outputs(run_slot0(engine, audio, idle_after=4, idle_steps=3), straight)
    out = engine.step(frames(2, 9), np.array([False, True]))
    assert out.tokens[0] == PAD
    engine.reset_slot(0)  # outside the graph: the replay must see it
    assert_same_outputs(run_slot0(engine, audio[:3]), straight[:3])


@pytest.mark.parametrize("name, layers, heads", [("config-stt-en_fr-hf.toml", 16, 4), ("config-stt-en-hf.toml", 48, 0)])
def test_shipped_models_step_full_size_in_bf16(name: str, layers: int, heads: int) -> None:
    config = load_config(CONFIG_DIR / name)
    engine = MoshiEngine(ModelSpec(2, config.asr_delay_in_tokens, config.extra_heads, config.model,
                                   options={"weights": "random"}))
    assert engine.device.type == "cuda" and engine.dtype == torch.bfloat16
    assert len(engine.lm.transformer.layers) == layers and len(engine.lm.extra_heads) == heads
    for t in range(3):
        out = engine.step(frames(2, t), np.ones(2, bool))
    assert out.tokens.shape == (2,) and ((out.tokens >= 0) & (out.tokens < config.model["text_out_vocab_size"])).all()
    assert engine._forward_text._graph is not None and (out.prs is None) == (heads == 0)
    if heads:
        assert np.isfinite(out.prs).all()
    engine.close()
