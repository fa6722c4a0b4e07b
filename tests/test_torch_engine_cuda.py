"""The torch engine on a CUDA GPU (skipped elsewhere): the captured graph computes what eager PyTorch computes."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

from test_torch_engine import TINY_MODEL, assert_same, frames, state  # noqa: E402

from yapbench.server.engines.base import PAD, ModelSpec  # noqa: E402
from yapbench.server.engines.torch_engine import TorchEngine  # noqa: E402


def cuda_engine(batch_size: int, graph: bool, model: dict | None = None) -> TorchEngine:
    options = {"device": "cuda", "cuda_graph": graph}
    return TorchEngine(ModelSpec(batch_size, 6, 4, TINY_MODEL if model is None else model, options=options))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_graph_replay_matches_eager(dtype: str) -> None:
    engines = []
    for graph in (False, True):
        spec = ModelSpec(3, 6, 4, TINY_MODEL, options={"device": "cuda", "cuda_graph": graph, "dtype": dtype})
        engines.append(TorchEngine(spec))
    eager, graphed = engines
    assert graphed._graph is not None and eager._graph is None
    f = frames(3, 0)
    active = np.array([True, False, True])
    outs = [e.step(f, active) for e in engines]
    # One step from the same start: the caches depend only on the audio and the initial text token.
    tol = {"float32": 1e-5, "bfloat16": 2e-2}[dtype]
    torch.testing.assert_close(graphed.model.cache_k, eager.model.cache_k, rtol=tol, atol=tol)
    np.testing.assert_allclose(outs[1].prs, outs[0].prs, rtol=tol, atol=tol)
    assert outs[1].tokens[1] == PAD and outs[0].tokens[1] == PAD


def test_graph_keeps_inactive_slots_and_honours_reset() -> None:
    engine = cuda_engine(3, graph=True)
    for t in range(6):
        engine.step(frames(3, t), np.ones(3, bool))
    frozen = state(engine, 1)
    for t in range(6):
        engine.step(frames(3, 10 + t), np.array([True, False, True]))
    assert_same(state(engine, 1), frozen)
    engine.reset_slot(0)  # outside the graph: the replay must see it
    engine.step(frames(3, 20), np.array([True, False, False]))
    assert engine.model.pos.tolist() == [1, 6, 12]


def test_full_size_model_steps_in_bf16() -> None:
    engine = cuda_engine(2, graph=True, model={})
    assert engine.dtype == torch.bfloat16
    params = sum(p.numel() for p in engine.model.parameters())
    assert 0.9e9 < params < 1.1e9  # "1B"
    out = engine.step(frames(2, 0), np.ones(2, bool))
    assert np.isfinite(out.prs).all() and out.tokens.shape == (2,)
    engine.close()
