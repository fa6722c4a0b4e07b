"""The synthetic engine: words from frame energy, transcripts for clips it recognises, a GPU-like step cost.

Per step it costs one vectorised energy computation over the active rows plus a few Python operations per
active slot, so one core holds thousands of slots; the simulated step cost (the loop's sleep, see ServerConfig)
is what stands in for GPU time.

Per slot, two sources of words:
- a clip from the sample manifest, recognised by its onset fingerprint (`clips`): its transcript's words, placed
  on its loud stretches, so WER means something;
- otherwise, a placeholder word for every loud stretch, cut every WORD_FRAMES frames.
The extra heads are `pause.PauseHeads`.
"""

from __future__ import annotations

import numpy as np

from ...protocol import FRAME_SAMPLES
from .base import WORD_START, ModelSpec
from .clips import FP_SAMPLES, ONSET, ClipIndex, ClipPlan
from .per_slot import PerSlotEngine
from .schedule import TokenSchedule

PLACEHOLDER = "word"
WORD_FRAMES = 5  # a placeholder word lasts at most 400 ms
REARM_SILENT_FRAMES = 12  # after a miss, look for a known clip again after ~1 s of silence


class _Slot:
    """One slot's recogniser state."""

    __slots__ = ("sched", "plan_end", "searching", "fp_parts", "fp_at", "in_word", "word_frames", "silent")

    def __init__(self, delay: int) -> None:
        self.sched = TokenSchedule(delay)
        self.reset()

    def reset(self) -> None:
        self.sched.reset()
        self.plan_end = -1  # frame at which the followed clip ends; -1: not following a clip
        self.searching = True
        self.fp_parts: list[np.ndarray] = []
        self.fp_at = 0  # stream sample index of the onset being fingerprinted
        self.in_word = False
        self.word_frames = 0
        self.silent = 0


class SyntheticEngine(PerSlotEngine):
    name = "synthetic"
    default_step_ms = 15.0  # roughly a 1B-model step for a batch of 64 on a datacenter GPU

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self._slots = [_Slot(spec.asr_delay_in_tokens) for _ in range(spec.batch_size)]
        self._placeholder = self._vocab.token(str(spec.options.get("placeholder", PLACEHOLDER)))
        self._clips = ClipIndex({}) if spec.options.get("recognise_clips") is False else ClipIndex.from_manifest(
            spec.options.get("manifest") or None
        )

    @property
    def known_clips(self) -> int:
        return len(self._clips)

    def reset_slot(self, slot: int) -> None:
        self._slots[slot].reset()
        self._heads.reset(slot)

    def _advance(self, s: _Slot, frame: np.ndarray, loud: bool) -> int:
        f = s.sched.frame
        s.silent = 0 if loud else s.silent + 1
        if s.plan_end >= 0:
            if f < s.plan_end:
                return s.sched.advance()
            s.plan_end = -1
            s.searching = True
        if s.searching and (loud or s.fp_parts):
            plan = self._identify(s, frame, f)
            if plan is not None:
                self._follow(s, plan)
                return s.sched.advance()
        elif not s.searching and s.silent >= REARM_SILENT_FRAMES:
            s.searching = True
        self._placeholder_word(s, f, loud)
        return s.sched.advance()

    def _identify(self, s: _Slot, frame: np.ndarray, f: int) -> ClipPlan | None:
        """Collect the fingerprint that follows the first onset; one lookup, then stop searching."""
        if not s.fp_parts:
            hits = np.flatnonzero(np.abs(frame) >= ONSET)
            if not hits.size:
                return None
            first = int(hits[0])
            s.fp_at = f * FRAME_SAMPLES + first
            s.fp_parts = [frame[first : first + FP_SAMPLES].copy()]
        else:
            s.fp_parts.append(frame[: FP_SAMPLES - sum(p.size for p in s.fp_parts)].copy())
        if sum(p.size for p in s.fp_parts) < FP_SAMPLES:
            return None
        key = np.concatenate(s.fp_parts).astype(np.float32).tobytes()
        s.fp_parts = []
        s.searching = False
        return self._clips.lookup(key)

    def _follow(self, s: _Slot, plan: ClipPlan) -> None:
        s.sched.drop_pending()
        s.in_word = False
        for w in plan.words:
            s.sched.place_word(self._vocab.token(w.text), (s.fp_at + w.start) // FRAME_SAMPLES,
                               (s.fp_at + w.end) // FRAME_SAMPLES)
        s.plan_end = -(-(s.fp_at + plan.length) // FRAME_SAMPLES)

    def _placeholder_word(self, s: _Slot, f: int, loud: bool) -> None:
        if loud:
            if s.in_word and s.word_frames >= WORD_FRAMES:
                s.sched.put(f, self._placeholder)
                s.in_word = False
            if not s.in_word:
                s.sched.put(f, WORD_START)
                s.in_word, s.word_frames = True, 0
            s.word_frames += 1
        elif s.in_word:
            s.sched.put(f, self._placeholder)
            s.in_word = False
