"""The sphinx engine: real recognition with pocketsphinx and the English model bundled in its PyPI package.

Per slot: a soxr stream resampler (24 -> 16 kHz) and a pocketsphinx decoder, created on first use and kept for
the slot's next connections. Words come from the decoder's current best path: a word is committed once it ended
at least COMMIT_MARGIN_S before the newest audio (earlier parts of a partial hypothesis rarely change), and all
words are committed when an utterance ends (END_SILENCE_FRAMES of quiet after speech). Committed words are placed
at their recognised times through a `TokenSchedule`, so the server's delay and timestamps work as for any engine.
Decoding costs ~1/15 of real time per stream, so the loop calls `step` in a worker thread.
"""

from __future__ import annotations

import re

import numpy as np
import soxr
from pocketsphinx import Decoder

from ...protocol import SAMPLE_RATE
from .base import ModelSpec
from .per_slot import PerSlotEngine
from .schedule import TokenSchedule

RATE = 16_000
SPHINX_FRAMES_PER_STEP = 8  # pocketsphinx frames are 10 ms; a model step is 80 ms
COMMIT_MARGIN_S = 0.3
END_SILENCE_FRAMES = 4
_VARIANT = re.compile(r"\(\d+\)$")


def _is_word(token: str) -> bool:
    return not (token in ("<s>", "</s>", "<sil>") or token.startswith("[") or token.startswith("++"))


class _Slot:
    __slots__ = ("decoder", "resampler", "sched", "utt_start", "committed", "heard", "silent")

    def __init__(self, delay: int) -> None:
        self.decoder: Decoder | None = None
        self.resampler = soxr.ResampleStream(SAMPLE_RATE, RATE, 1, dtype="float32")
        self.sched = TokenSchedule(delay)
        self.utt_start = 0  # slot frame at which the decoder's current utterance began
        self.committed = 0  # pocketsphinx frames of this utterance already turned into words
        self.heard = False
        self.silent = 0


class SphinxEngine(PerSlotEngine):
    name = "sphinx"
    blocking = True

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self._slots = [_Slot(spec.asr_delay_in_tokens) for _ in range(spec.batch_size)]

    def warmup(self) -> None:
        self._decoder(self._slots[0])  # load the model once before Ready (the real server warms up here too)

    def _decoder(self, s: _Slot) -> Decoder:
        if s.decoder is None:
            s.decoder = Decoder(samprate=RATE, loglevel="FATAL")
            s.decoder.start_utt()
        return s.decoder

    def reset_slot(self, slot: int) -> None:
        s = self._slots[slot]
        if s.decoder is not None:
            s.decoder.end_utt()
            s.decoder.start_utt()
        s.resampler = soxr.ResampleStream(SAMPLE_RATE, RATE, 1, dtype="float32")
        s.sched.reset()
        s.utt_start, s.committed, s.heard, s.silent = 0, 0, False, 0
        self._heads.reset(slot)

    def _advance(self, s: _Slot, frame: np.ndarray, loud: bool) -> int:
        decoder = self._decoder(s)
        pcm = s.resampler.resample_chunk(frame)
        decoder.process_raw((np.clip(pcm, -1.0, 1.0) * 32767).astype(np.int16).tobytes(), False, False)
        s.heard = s.heard or loud
        s.silent = 0 if loud else s.silent + 1
        if s.heard and s.silent >= END_SILENCE_FRAMES:
            decoder.end_utt()
            self._commit(s, final=True)
            decoder.start_utt()
            s.utt_start, s.committed, s.heard = s.sched.frame + 1, 0, False
        else:
            self._commit(s, final=False)
        return s.sched.advance()

    def _commit(self, s: _Slot, final: bool) -> None:
        decoder = s.decoder
        if decoder is None or decoder.hyp() is None:
            return
        newest = (s.sched.frame + 1 - s.utt_start) * SPHINX_FRAMES_PER_STEP
        limit = newest if final else newest - int(COMMIT_MARGIN_S * 100)
        for seg in decoder.seg():
            if seg.start_frame < s.committed:
                continue
            if seg.end_frame > limit:
                break
            s.committed = seg.end_frame + 1
            if _is_word(seg.word):
                s.sched.place_word(self._vocab.token(_VARIANT.sub("", seg.word)),
                                   s.utt_start + seg.start_frame // SPHINX_FRAMES_PER_STEP,
                                   s.utt_start + seg.end_frame // SPHINX_FRAMES_PER_STEP)
