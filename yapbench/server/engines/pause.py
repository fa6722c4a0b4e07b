"""Stand-in extra heads: per slot, the probability of "a pause within 0.5 / 1 / 2 / 3 s", grown from the current
silence. The real heads are a learned semantic VAD; clients only threshold them (Unmute: prs[2] > 0.5)."""

from __future__ import annotations

import numpy as np

from ...protocol import FRAME_SAMPLES, FRAME_SECONDS

HORIZONS_S = np.array([0.5, 1.0, 2.0, 3.0], dtype=np.float32)
SPEECH_PR = 0.02
LOUD_MEAN_SQUARE = 1e-4  # 80 ms frames above -40 dBFS RMS count as speech


def loud_rows(frames: np.ndarray) -> np.ndarray:
    """(n, 1920) -> (n,) bool: frames loud enough to be speech."""
    return np.einsum("ij,ij->i", frames, frames) / FRAME_SAMPLES > LOUD_MEAN_SQUARE


class PauseHeads:
    def __init__(self, batch_size: int, heads: int) -> None:
        self._silent_s = np.zeros(batch_size, dtype=np.float32)
        self._horizons = np.resize(HORIZONS_S, heads)
        self.prs = np.zeros((batch_size, heads), dtype=np.float32) if heads else None

    def reset(self, slot: int) -> None:
        self._silent_s[slot] = 0.0

    def update(self, idx: np.ndarray, loud: np.ndarray) -> np.ndarray | None:
        """Advance the active rows `idx` by one frame; returns the (batch_size, heads) probabilities or None."""
        if self.prs is None:
            return None
        silent = np.where(loud, 0.0, self._silent_s[idx] + FRAME_SECONDS).astype(np.float32)
        self._silent_s[idx] = silent
        self.prs[idx] = np.maximum(1.0 - np.exp(-silent[:, None] / self._horizons[None, :]), SPEECH_PR)
        return self.prs
