"""The shape of CPU engines that decide each active slot's token from that slot's own frame (synthetic, sphinx):
the batched step is a loop over active rows, with the stand-in pause heads and a shared word vocabulary."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import numpy as np

from .base import Engine, ModelSpec, StepOutput
from .pause import PauseHeads, loud_rows
from .schedule import Vocab


class PerSlotEngine(Engine):
    """Subclasses fill `self._slots` (one state object per slot) and implement `_advance`."""

    _slots: list[Any]

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self._vocab = Vocab()
        self._tokens = np.zeros(spec.batch_size, dtype=np.int64)
        self._heads = PauseHeads(spec.batch_size, spec.extra_heads)

    def detokenize(self, tokens: list[int]) -> str:
        return self._vocab.text(tokens)

    def step(self, frames: np.ndarray, active: np.ndarray) -> StepOutput:
        idx = np.flatnonzero(active)
        sub = frames[idx]
        loud = loud_rows(sub)
        slots, advance = self._slots, self._advance
        self._tokens[idx] = [advance(slots[i], sub[j], is_loud)
                             for j, (i, is_loud) in enumerate(zip(idx.tolist(), loud.tolist()))]
        return StepOutput(self._tokens, self._heads.update(idx, loud))

    @abstractmethod
    def _advance(self, slot: Any, frame: np.ndarray, loud: bool) -> int:
        """This slot's text token for this frame (Kyutai's convention: 3 padding, 0 word start)."""
