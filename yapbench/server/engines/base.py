"""What the model loop needs from a recognizer: one batched step over 80 ms frames, like moshi's `State::step_pcm`.

An engine sees exactly what the real model sees: a (batch_size, 1920) float32 batch, one row per slot, and a mask
of the rows that hold a new frame this step (inactive rows hold stale data and must not change the slot's state).
It answers with one text token per slot, in Kyutai's text-stream convention, and, for models with extra heads,
the class-0 probability of each head. The loop turns tokens into Word/EndWord exactly as moshi-core does
(`yapbench.server.words`), so timestamps, the model delay and the missing last EndWord behave like the real
server whatever the engine.

Text token convention (moshi `existing_text_padding_id=3`, `existing_text_end_padding_id=0`):
    PAD (3)      nothing new
    WORD_START (0)  a word begins here (closes the previous word's EndWord)
    any other    a piece of the current word; `detokenize` turns a word's pieces into its text

The loop ignores a slot's tokens during its first `asr_delay_in_tokens - 1` steps and dates the token of the
slot's s-th step at (s - asr_delay_in_tokens) * 80 ms: an engine that wants a word dated at frame f emits its
WORD_START at step f + asr_delay_in_tokens (`TokenSchedule` does this bookkeeping).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PAD = 3
WORD_START = 0
FIRST_WORD_TOKEN = 4  # ids below this are reserved by the convention above


@dataclass(frozen=True)
class ModelSpec:
    """Everything an engine is built from (read from the server config)."""

    batch_size: int
    asr_delay_in_tokens: int
    extra_heads: int  # 0: the model has none and the server sends no Step
    model: dict[str, Any]  # the [modules.asr.model] table, e.g. for an engine that builds the real architecture
    temperature: float = 0.0
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)  # engine-specific ([yapbench.engine_options])
    # [modules.asr]'s weight files as written (a path, file:// or hf://), for engines that can load real weights
    lm_model_file: str = ""
    audio_tokenizer_file: str = ""
    text_tokenizer_file: str = ""


@dataclass(slots=True)
class StepOutput:
    tokens: np.ndarray  # (batch_size,) integer text token per slot; only active rows are read
    prs: np.ndarray | None  # (batch_size, extra_heads) float32, or None when the model has no extra heads


class Engine(ABC):
    """A batched streaming recognizer. One instance serves all slots; the model loop is its only caller.

    ``blocking = True`` makes the loop call `step` in a worker thread (a GPU or a slow decoder), so the event loop
    keeps reading sockets meanwhile; calls never overlap.
    """

    name = "engine"
    blocking = False
    default_step_ms = 0.0  # simulated cost added to each step (on top of the engine's own time) unless configured

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    def warmup(self) -> None:  # noqa: B027 (optional: most engines need no warm-up)
        """Called once before the loop accepts work (the real server runs two steps on zeros here)."""

    @abstractmethod
    def step(self, frames: np.ndarray, active: np.ndarray) -> StepOutput:
        """Advance every active slot by one frame: frames (batch_size, 1920) float32, active (batch_size,) bool."""

    @abstractmethod
    def reset_slot(self, slot: int) -> None:
        """Forget a slot's state (a new connection, or a client Init)."""

    @abstractmethod
    def detokenize(self, tokens: list[int]) -> str:
        """The text of one word from its pieces (sentencepiece `decode_piece_ids` in the real server)."""

    def close(self) -> None:  # noqa: B027 (optional: most engines hold nothing to release)
        """Release resources at shutdown."""
