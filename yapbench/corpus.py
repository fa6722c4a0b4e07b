"""Samples turned into what streams send: decoded once, pre-encoded once, shared by every stream of a process."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from .audio import AudioError, load_clip
from .errors import UserError
from .protocol import FRAME_SAMPLES, FRAME_SECONDS
from .samples import Sample
from .streamer import PreparedClip, prepare_clip


@dataclass(frozen=True)
class Corpus:
    samples: tuple[Sample, ...]
    clips: tuple[PreparedClip, ...]

    def pick(self, rng: random.Random) -> tuple[Sample, PreparedClip]:
        """A sample drawn by the manifest's weights."""
        i = rng.choices(range(len(self.samples)), weights=[s.weight for s in self.samples])[0]
        return self.samples[i], self.clips[i]

    def named(self, name: str) -> tuple[Sample, PreparedClip]:
        """The sample called `name` (its manifest name); a UserError lists the ones this test has."""
        for s, c in zip(self.samples, self.clips):
            if s.name == name:
                return s, c
        raise UserError(f"sample {name!r} is not among this test's samples "
                        f"({', '.join(s.name for s in self.samples)})")

    def meta(self) -> dict:
        """What run.json records about the samples (the report computes WER against these transcripts)."""
        return {
            s.name: {"transcript": s.transcript, "language": s.language, "duration_s": round(c.audio_s, 3)}
            for s, c in zip(self.samples, self.clips)
        }


def build_corpus(samples: list[Sample], silence_prefix_s: float = 0.0) -> Corpus:
    """Decode and encode every sample; a bad file is a UserError naming it."""
    if sum(s.weight for s in samples) <= 0:
        raise UserError("samples: every selected sample has weight 0")
    prefix = np.zeros((round(silence_prefix_s / FRAME_SECONDS), FRAME_SAMPLES), dtype=np.float32)
    clips = []
    for s in samples:
        try:
            frames = load_clip(s.path).frames()
        except AudioError as exc:
            raise UserError(f"sample {exc}") from None
        clips.append(prepare_clip(s.name, np.concatenate([prefix, frames]) if len(prefix) else frames))
    return Corpus(tuple(samples), tuple(clips))
