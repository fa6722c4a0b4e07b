"""End-of-turn detection from the pause heads of the server's Step messages (docs/metrics.md, "Conversations").

A Step's `prs` holds one probability per extra head (the 1B model has four: a pause within 0.5, 1, 2 and 3 s). The
rule says which head is read, from what value on it means "the turn is over", and whether the raw value is read as
received or smoothed the way Kyutai's Unmute smooths it (`unmute/stt/speech_to_text.py`): the first 12 Steps of the
connection ignored ("the pause prediction is all over the place in the first few steps"), then an exponential moving
average `value += alpha * (prs[head] - value)` with `alpha = 1 - 2 ** (-dt / half_life)`, dt the 80 ms step and a
half-life of 0.01 s whether the value rises or falls (Unmute's attack and release times), starting from 1.0. With
those constants alpha is 1 - 2**-8, so the smoothed value follows the raw one within 0.4 % per Step: what the option
changes in practice is the 12 Steps ignored at the start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from .protocol import FRAME_SECONDS


class Smoothing(StrEnum):
    NONE = "none"  # the head's value as received
    UNMUTE = "unmute"  # Unmute's: 12 Steps ignored, then an EMA with a 0.01 s half-life both ways


UNMUTE_IGNORED_STEPS = 12
UNMUTE_HALF_LIFE_S = 0.01
UNMUTE_INITIAL = 1.0
UNMUTE_ALPHA = 1.0 - 2.0 ** (-FRAME_SECONDS / UNMUTE_HALF_LIFE_S)  # the EMA's weight of each new Step


@dataclass(frozen=True)
class EndOfTurnRule:
    """Which pause head says the turn is over, and from what value: Unmute's prs[2] >= 0.5 by default."""

    head: int = 2
    threshold: float = 0.5
    smoothing: Smoothing = Smoothing.NONE

    def __post_init__(self) -> None:
        if self.head < 0:
            raise ValueError(f"the pause head is an index from 0, got {self.head}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"the threshold is a probability in (0, 1], got {self.threshold:g}")

    def detector(self) -> Detector:
        return Detector(self)


DEFAULT_RULE = EndOfTurnRule()


class Detector:
    """One connection's reading of its Steps: `above(prs)` says whether this Step's prediction is at or over the
    threshold, None while there is nothing to judge (no such head, or a Step the smoothing ignores); `signal`
    whether any Step carried the head."""

    def __init__(self, rule: EndOfTurnRule) -> None:
        self.rule = rule
        self.signal = False
        self._steps = 0
        self._value = UNMUTE_INITIAL

    def above(self, prs: tuple[float, ...]) -> bool | None:
        if len(prs) <= self.rule.head:
            return None
        raw = float(prs[self.rule.head])
        if math.isnan(raw):
            return None
        self.signal = True
        if self.rule.smoothing is Smoothing.NONE:
            return raw >= self.rule.threshold
        self._steps += 1
        if self._steps <= UNMUTE_IGNORED_STEPS:
            return None
        self._value += UNMUTE_ALPHA * (raw - self._value)
        return self._value >= self.rule.threshold
