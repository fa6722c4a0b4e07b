"""The reference server's GPU engine: Kyutai STT 1B with random weights, one batched step per 80 ms frame.

Per step, as moshi-server's BatchedAsr does it (PROTOCOL.md §5): the input is always the full batch,
(batch_size, 1920) float32 frames plus an active mask; every row is computed, only active rows advance. The only
host synchronisation is reading back the sampled text tokens and the extra heads' probabilities (one small copy).

Audio tokens: the real server runs Mimi (a SEANet conv encoder plus an 8-layer transformer at 12.5 Hz, about 1/40
of the 1B's parameters) to turn a frame into 32 codebook tokens. Its cost is not modelled: `StandInTokenizer`
derives the 32 tokens from a fixed random projection of the frame, so tokens follow the audio (silence gives one
constant token set) at negligible cost.

Text: the weights are random, so the sampler biases the padding tokens to give realistic word traffic, about
`word_rate` non-padding tokens per frame, the rest padding (3) and end-of-padding (0). Token ids map to
placeholder words "w<id>".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .torch_model import STT_1B, TEXT_EPAD, TEXT_PAD, SttConfig, SttModel

FRAME_SAMPLES = 1920
REPORTED_CLASS = 0  # Step.prs reports class 0 of each extra head's softmax (PROTOCOL.md §2)


@dataclass(frozen=True, slots=True)
class StepOutput:
    text_tokens: np.ndarray  # (batch_size,) int64; inactive rows hold TEXT_PAD
    prs: np.ndarray  # (batch_size, extra_heads) float32


def token_text(token: int) -> str:
    """The placeholder text of a non-padding token (random weights: the id is all there is)."""
    return f"w{token}"


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class StandInTokenizer(torch.nn.Module):
    """Frame -> 32 codebook tokens by a fixed random projection, quantised; stands in for Mimi (not its cost)."""

    def __init__(self, codebooks: int, vocab: int, device: torch.device, seed: int = 1) -> None:
        super().__init__()
        self.levels = vocab - 1  # the last id of each codebook is the model's "initial" token, never produced
        gen = torch.Generator(device=device).manual_seed(seed)
        proj = torch.randn(FRAME_SAMPLES, codebooks, generator=gen, device=device) / math.sqrt(FRAME_SAMPLES)
        self.register_buffer("proj", proj, persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        # Speech at ~0.1 RMS projects to ~0.1; the gain of 10 spreads that over the codebook's range.
        unit = (torch.tanh(10.0 * frames @ self.proj) + 1.0) / 2.0
        return (unit * self.levels).long().clamp_(0, self.levels - 1)


class TextSampler(torch.nn.Module):
    """Samples text tokens at temperature 1 with the padding tokens biased to a target word rate.

    With random weights the text logits are i.i.d. N(0, 1) per token (see SttModel._init_weights), so the expected
    softmax mass of the V-2 ordinary tokens is (V-2)·e^0.5; biasing pad and end-of-pad by log(p/p_word · that mass)
    gives them probabilities p_pad and p_epad and leaves p_word = 1 - p_pad - p_epad to words.
    """

    def __init__(self, vocab: int, word_rate: float, epad_rate: float, device: torch.device) -> None:
        super().__init__()
        word_mass = (vocab - 2) * math.exp(0.5)
        bias = torch.zeros(vocab, device=device)
        bias[TEXT_PAD] = math.log((1.0 - word_rate - epad_rate) / word_rate * word_mass)
        bias[TEXT_EPAD] = math.log(epad_rate / word_rate * word_mass)
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        # Gumbel-max sampling (as moshi-server does for temperature > 0): no host round trip.
        gumbel = -torch.log(-torch.log(torch.rand_like(logits).clamp_(1e-20, 1.0)))
        return (logits + self.bias + gumbel).argmax(dim=-1)


class TorchEngine:
    """Batched streaming STT on PyTorch. `step` runs one frame for all slots; `reset_slot` frees one slot.

    cuda_graph: capture the step once and replay it (CUDA only); removes the per-kernel launch cost of eager
    PyTorch (~600 launches a step), the main gap to a fused server at small batch sizes.
    """

    def __init__(
        self,
        batch_size: int,
        cfg: SttConfig = STT_1B,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        cuda_graph: bool = False,
        word_rate: float = 0.2,
        epad_rate: float = 0.1,
        seed: int = 0,
    ) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        on_gpu = self.device.type == "cuda"
        # bf16 on CUDA, fp32 on CPU: moshi-server's defaults (dtype_override unset).
        self.dtype = dtype or (torch.bfloat16 if on_gpu else torch.float32)
        self.cfg = cfg
        self.batch_size = batch_size
        self.model = SttModel(cfg, batch_size, self.device, self.dtype, seed=seed)
        self.tokenizer = StandInTokenizer(cfg.audio_codebooks, cfg.audio_vocab_size, self.device, seed=seed + 1)
        self.sampler = TextSampler(cfg.text_out_vocab_size, word_rate, epad_rate, self.device)
        # Static input/output buffers: the same memory every step, as a CUDA graph needs, and pinned on the host
        # so the per-step copies are plain DMA.
        self._frames = torch.zeros(batch_size, FRAME_SAMPLES, device=self.device)
        self._active = torch.zeros(batch_size, dtype=torch.bool, device=self.device)
        self._out = torch.zeros(batch_size, 1 + cfg.extra_heads, device=self.device)
        self._host_frames = torch.zeros(batch_size, FRAME_SAMPLES, pin_memory=on_gpu)
        self._host_active = torch.zeros(batch_size, dtype=torch.bool, pin_memory=on_gpu)
        self._graph: torch.cuda.CUDAGraph | None = self._capture() if cuda_graph and on_gpu else None

    @torch.no_grad()
    def _compute(self) -> None:
        audio = self.tokenizer(self._frames)
        logits, prs = self.model.step(audio, self._active)
        text = torch.where(self._active, self.sampler(logits), TEXT_PAD)
        self.model.commit_text(text, self._active)
        # One output tensor so the step ends with a single device-to-host copy (ids < 2^24 are exact in fp32).
        self._out[:, 0] = text.float()
        self._out[:, 1:] = prs[:, :, REPORTED_CLASS]

    def _capture(self) -> torch.cuda.CUDAGraph:
        # Warm up on a side stream with no slot active (nothing in the state moves), then capture.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self._compute()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._compute()
        return graph

    def step(self, frames: np.ndarray, active: np.ndarray) -> StepOutput:
        """frames: (batch_size, 1920) float32; active: (batch_size,) bool. Inactive rows' frames are ignored."""
        self._host_frames.numpy()[:] = frames
        self._host_active.numpy()[:] = active
        self._frames.copy_(self._host_frames, non_blocking=True)
        self._active.copy_(self._host_active, non_blocking=True)
        if self._graph is not None:
            self._graph.replay()
        else:
            self._compute()
        out = self._out.cpu().numpy()  # the step's one synchronisation
        return StepOutput(text_tokens=out[:, 0].astype(np.int64), prs=out[:, 1:].copy())

    def reset_slot(self, i: int) -> None:
        self.model.reset_slot(i)
