"""Text tokens -> Word / EndWord, exactly as moshi-core's `asr::State::step_tokens` does it per batch item.

- The first `delay - 1` steps of a slot are ignored (the check is `step_idx >= delay` after incrementing).
- Pieces collect while the token is neither 0 nor 3; a 0 or 3 after pieces emits Word{start_time = last 0}.
- A 0 dates itself at (step_idx - delay) / 12.5, emits EndWord for a word not yet ended, and becomes the next
  word's start time. So the last word of a stream gets no EndWord until another 0 comes.
"""

from __future__ import annotations

from .engines.base import PAD, WORD_START

FRAME_RATE = 12.5
_NOTHING: tuple[None, None] = (None, None)


class WordState:
    __slots__ = ("step_idx", "pieces", "unended_word", "last_stop_time")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.step_idx = 0
        self.pieces: list[int] = []
        self.unended_word = False
        self.last_stop_time = 0.0

    def push(self, token: int, delay: int) -> tuple[tuple[list[int], float] | None, float | None]:
        """One step's token -> (word pieces and start_time, or None; EndWord stop_time, or None)."""
        self.step_idx += 1
        if self.step_idx < delay or (token == PAD and not self.pieces):
            return _NOTHING  # the commonest step by far: nothing new
        word = None
        if token == PAD or token == WORD_START:
            if self.pieces:
                word = (self.pieces, self.last_stop_time)
                self.pieces = []
                self.unended_word = True
        else:
            self.pieces.append(token)
        end = None
        if token == WORD_START:
            stop_time = (self.step_idx - delay) / FRAME_RATE
            if self.unended_word:
                self.unended_word = False
                end = stop_time
            self.last_stop_time = stop_time
        return word, end
