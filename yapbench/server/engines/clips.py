"""Recognising yapbench's own sample clips in a stream, so the synthetic engine can answer with their transcripts.

A clip is identified by a fingerprint: the exact float32 values of the FP_SAMPLES samples that follow its first
sample louder than ONSET. yapbench's clients send `yapbench.audio.to_server_format` output bit for bit, so the
fingerprint survives any silence prefix and any chunking; audio from elsewhere simply does not match.
Each known clip carries a word plan: its transcript's words spread over its loud stretches (80 ms frames above
an energy threshold), weighted by word length, as sample offsets from the onset.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...audio import AudioError, load_clip
from ...protocol import FRAME_SAMPLES
from ...samples import DEFAULT_MANIFEST, load_manifest
from .pause import loud_rows

log = logging.getLogger("yapbench.server")

ONSET = 0.05  # amplitude that marks a clip's onset
FP_SAMPLES = 24
MAX_GAP_FRAMES = 2  # quieter stretches this short stay inside one loud stretch


@dataclass(frozen=True, slots=True)
class PlannedWord:
    text: str
    start: int  # samples after the onset
    end: int


@dataclass(frozen=True, slots=True)
class ClipPlan:
    name: str
    words: tuple[PlannedWord, ...]
    length: int  # samples from the onset to the clip's end


def onset(pcm: np.ndarray) -> int:
    """Index of the first sample at or above ONSET in magnitude, or -1."""
    hits = np.flatnonzero(np.abs(pcm) >= ONSET)
    return int(hits[0]) if hits.size else -1


def _speech_runs(loud: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) frame ranges of loud stretches, bridging gaps of at most MAX_GAP_FRAMES."""
    runs: list[tuple[int, int]] = []
    for f in np.flatnonzero(loud).tolist():
        if runs and f - runs[-1][1] <= MAX_GAP_FRAMES:
            runs[-1] = (runs[-1][0], f + 1)
        else:
            runs.append((f, f + 1))
    return runs


def plan_words(pcm: np.ndarray, transcript: str, start: int) -> tuple[PlannedWord, ...]:
    """Spread the transcript's words over the clip's loud stretches, each word's share by its length."""
    words = transcript.split()
    n_frames = -(-pcm.size // FRAME_SAMPLES)
    padded = np.zeros(n_frames * FRAME_SAMPLES, dtype=np.float32)
    padded[: pcm.size] = pcm
    runs = _speech_runs(loud_rows(padded.reshape(-1, FRAME_SAMPLES))) or [(0, n_frames)]
    # Speech time -> clip time: concatenate the loud stretches, place words on that axis, map back.
    run_starts = np.array([a for a, _ in runs], dtype=np.float64)
    run_lens = np.array([b - a for a, b in runs], dtype=np.float64)
    cum = np.concatenate([[0.0], np.cumsum(run_lens)])
    weights = np.array([len(w) + 1 for w in words], dtype=np.float64)
    edges = np.concatenate([[0.0], np.cumsum(weights)]) / max(weights.sum(), 1.0) * cum[-1]

    def to_sample(speech_frame: float) -> int:
        k = min(int(np.searchsorted(cum, speech_frame, side="right")) - 1, len(runs) - 1)
        return int((run_starts[k] + speech_frame - cum[k]) * FRAME_SAMPLES) - start

    return tuple(PlannedWord(w, to_sample(edges[i]), to_sample(edges[i + 1] - 1e-6)) for i, w in enumerate(words))


class ClipIndex:
    """Fingerprint -> word plan for every clip of a manifest that decodes."""

    def __init__(self, plans: dict[bytes, ClipPlan]) -> None:
        self._plans = plans

    def __len__(self) -> int:
        return len(self._plans)

    def lookup(self, fingerprint: bytes) -> ClipPlan | None:
        return self._plans.get(fingerprint)

    @classmethod
    def from_manifest(cls, manifest: str | Path | None = None) -> "ClipIndex":
        path = Path(manifest) if manifest else DEFAULT_MANIFEST
        if not path.exists():
            log.warning("synthetic engine: no manifest at %s; every word will be a placeholder", path)
            return cls({})
        plans: dict[bytes, ClipPlan] = {}
        for sample in load_manifest(path):
            try:
                pcm = load_clip(sample.path).pcm
            except AudioError as exc:
                log.warning("synthetic engine: skipping %s", exc)
                continue
            start = onset(pcm)
            if start < 0 or start + FP_SAMPLES > pcm.size or not sample.transcript:
                continue
            key = pcm[start : start + FP_SAMPLES].tobytes()
            plans.setdefault(key, ClipPlan(sample.name, plan_words(pcm, sample.transcript, start), pcm.size - start))
        return cls(plans)
