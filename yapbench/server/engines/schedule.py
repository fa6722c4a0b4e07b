"""Bookkeeping shared by engines that know *when* words are (by frame) and must emit them as a delayed token stream."""

from __future__ import annotations

from .base import FIRST_WORD_TOKEN, PAD, WORD_START


class Vocab:
    """One token per distinct word; grows as words are seen (no tokenizer file is needed)."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._words: list[str] = []

    def token(self, word: str) -> int:
        tok = self._ids.get(word)
        if tok is None:
            tok = self._ids[word] = FIRST_WORD_TOKEN + len(self._words)
            self._words.append(word)
        return tok

    def text(self, tokens: list[int]) -> str:
        return "".join(self._words[t - FIRST_WORD_TOKEN] for t in tokens if t >= FIRST_WORD_TOKEN)


class TokenSchedule:
    """One slot's future tokens, by the audio frame they describe.

    The token emitted at a slot's s-th step is dated at frame s - asr_delay_in_tokens, so the token for frame f
    leaves `lag = delay - 1` steps after frame f arrived: an engine can still place a word that started up to
    `lag` frames ago at its true time. Words never overlap: each one's WORD_START comes after the previous one's
    last piece, which is what moshi's token stream looks like.
    """

    __slots__ = ("lag", "frame", "pending", "last_used")

    def __init__(self, asr_delay_in_tokens: int) -> None:
        self.lag = max(0, asr_delay_in_tokens - 1)
        self.frame = 0  # frames of this slot processed so far
        self.pending: dict[int, int] = {}
        self.last_used = -1

    @property
    def next_emitted(self) -> int:
        """The frame whose token the next `advance` emits; anything earlier is already out."""
        return self.frame - self.lag

    def reset(self) -> None:
        self.frame = 0
        self.pending.clear()
        self.last_used = -1

    def drop_pending(self) -> None:
        """Forget tokens not emitted yet (a guess that a better source replaces)."""
        self.pending.clear()
        self.last_used = min(self.last_used, self.next_emitted - 1)

    def put(self, frame: int, token: int) -> int:
        """Place one token at `frame` or the first free frame after it; returns the frame used."""
        at = max(frame, self.next_emitted, self.last_used + 1)
        self.pending[at] = token
        self.last_used = at
        return at

    def place_word(self, token: int, start_frame: int, end_frame: int) -> None:
        """A word spoken from start_frame to end_frame: WORD_START at its start, its token at its end."""
        at = self.put(start_frame, WORD_START)
        self.put(max(end_frame, at + 1), token)

    def advance(self) -> int:
        """Called once per step of this slot: the token to emit now."""
        tok = self.pending.pop(self.frame - self.lag, PAD) if self.pending else PAD
        self.frame += 1
        return tok
