"""Speech files in, the server's input format out: float32, mono, 24 kHz, split into 1920-sample frames.

Decoding is libsndfile (soundfile: wav, flac, ogg, mp3), resampling is soxr (the "HQ" band-limited resampler),
so a 16 kHz LibriSpeech file and a 48 kHz stereo mp3 reach the server as the real clients would send them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr

from .protocol import FRAME_SAMPLES, SAMPLE_RATE

MAX_SECONDS = 3600.0  # one hour: longer is almost certainly a mistake, and would cost ~350 MB once decoded


class AudioError(ValueError):
    """A speech file that cannot be used, with the file and the reason in the message."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class Clip:
    """One speech file, ready to stream."""

    path: str
    pcm: np.ndarray  # float32, mono, 24 kHz, in [-1, 1]
    source_rate: int
    source_channels: int

    @property
    def duration_s(self) -> float:
        return self.pcm.size / SAMPLE_RATE

    @property
    def n_frames(self) -> int:
        return -(-self.pcm.size // FRAME_SAMPLES)

    def frames(self) -> np.ndarray:
        """Shape (n_frames, 1920); the last frame is zero-padded (the server never processes a partial frame)."""
        out = np.zeros(self.n_frames * FRAME_SAMPLES, dtype=np.float32)
        out[: self.pcm.size] = self.pcm
        return out.reshape(-1, FRAME_SAMPLES)


def to_server_format(data: np.ndarray, rate: int) -> np.ndarray:
    """(samples,) or (samples, channels) at any rate -> mono float32 at 24 kHz, clipped to [-1, 1]."""
    mono = data.mean(axis=1) if data.ndim == 2 else data
    mono = np.asarray(mono, dtype=np.float32)
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality="HQ").astype(np.float32, copy=False)
    return np.clip(mono, -1.0, 1.0)


def load_clip(path: str | Path, max_seconds: float = MAX_SECONDS) -> Clip:
    """Decode a speech file; AudioError names the file and says what is wrong with it."""
    p = Path(path)
    if not p.exists():
        raise AudioError(p, "no such file")
    if p.is_dir():
        raise AudioError(p, "is a directory, not an audio file")
    if p.stat().st_size == 0:
        raise AudioError(p, "is empty (0 bytes)")
    try:
        info = soundfile.info(str(p))
    except Exception as exc:
        raise AudioError(p, f"not a readable audio file ({_reason(exc, p)})") from None
    if info.frames <= 0:
        raise AudioError(p, "contains no audio samples")
    if info.frames / info.samplerate > max_seconds:
        raise AudioError(p, f"is {info.frames / info.samplerate:.0f} s long; the limit is {max_seconds:.0f} s")
    try:
        data, rate = soundfile.read(str(p), dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(p, f"could not be decoded ({_reason(exc, p)})") from None
    if data.shape[0] == 0:
        raise AudioError(p, "contains no audio samples")
    if not np.isfinite(data).all():
        raise AudioError(p, "contains NaN or infinite samples")
    return Clip(str(p), to_server_format(data, rate), int(rate), int(data.shape[1]))


def _reason(exc: Exception, path: Path) -> str:
    text = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    # soundfile prefixes "Error opening '<path>': ": the message already starts with the path
    return text.replace(f"Error opening {str(path)!r}: ", "").replace("Error opening ", "").strip()
