"""The reference server's GPU engine: Kyutai STT 1B with random weights, one batched step per 80 ms frame.

Per step, as moshi-server's BatchedAsr does it (docs/protocol.md §5): the input is always the full batch,
(batch_size, 1920) float32 frames plus an active mask; every row is computed, only active rows advance. The only
host synchronisation is reading back the sampled text tokens and the extra heads' probabilities (one small copy).

Audio tokens: the real server runs Mimi (a SEANet conv encoder plus an 8-layer transformer at 12.5 Hz, about 1/40
of the 1B's parameters) to turn a frame into 32 codebook tokens. Its cost is not modelled: `StandInTokenizer`
derives the 32 tokens from a fixed random projection of the frame, so tokens follow the audio (silence gives one
constant token set) at negligible cost.

Text: the weights are random, so the sampler biases the padding tokens to give realistic word traffic, about
`word_rate` word pieces per frame, the rest padding (3) and word starts (0); the server's word logic
(yapbench.server.words) turns them into Word/EndWord as for any engine. A word's pieces map to a placeholder
"w<id>-<id>...". The config's `temperature` is not honoured: greedy decoding of random logits would repeat one
token per slot, not produce word traffic.

Options ([yapbench.engine_options]): device ("cuda" when available, else "cpu"), dtype ("bfloat16" on CUDA,
"float32" on CPU: moshi-server's defaults), cuda_graph (true: capture the step once and replay it; removes eager
PyTorch's per-kernel launch cost, ~600 launches a step, which a compiled server does not pay), word_rate (0.2),
word_start_rate (0.1).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ...protocol import FRAME_SAMPLES
from .base import FIRST_WORD_TOKEN, PAD, WORD_START, Engine, ModelSpec, StepOutput
from .torch_model import SttConfig, SttModel

REPORTED_CLASS = 0  # Step.prs reports class 0 of each extra head's softmax (docs/protocol.md §2)
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class StandInTokenizer(torch.nn.Module):
    """Frame -> codebook tokens by a fixed random projection, quantised; stands in for Mimi (not its cost)."""

    def __init__(self, codebooks: int, vocab: int, device: torch.device, seed: int) -> None:
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
    """Samples text tokens at temperature 1 with PAD and WORD_START biased to a target word rate.

    With random weights the text logits are N(0, 1) per token (see SttModel._init_weights), so the softmax mass of
    the ordinary tokens is about their count times e^0.5. PAD's and WORD_START's own logits are dropped (a random
    row's logit has a persistent offset that would skew their rates) and replaced by log(p / p_word · that mass),
    which gives them probabilities p_pad and p_start and leaves p_word = 1 - p_pad - p_start to word pieces.
    The ids the convention reserves (1, 2) are never sampled.
    """

    def __init__(self, vocab: int, word_rate: float, word_start_rate: float, device: torch.device) -> None:
        super().__init__()
        if not (0 < word_rate and 0 < word_start_rate and word_rate + word_start_rate < 1):
            raise ValueError("word_rate and word_start_rate must be positive and sum to less than 1")
        word_mass = (vocab - FIRST_WORD_TOKEN) * math.exp(0.5)
        bias = torch.zeros(vocab, device=device)
        bias[:FIRST_WORD_TOKEN] = -math.inf
        bias[PAD] = math.log((1.0 - word_rate - word_start_rate) / word_rate * word_mass)
        bias[WORD_START] = math.log(word_start_rate / word_rate * word_mass)
        keep = torch.ones(vocab, device=device)
        keep[:FIRST_WORD_TOKEN] = 0.0
        self.register_buffer("bias", bias, persistent=False)
        self.register_buffer("keep", keep, persistent=False)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        # Gumbel-max sampling (as moshi-server does for temperature > 0): no host round trip.
        gumbel = -torch.log(-torch.log(torch.rand_like(logits).clamp_(1e-20, 1.0)))
        return (logits * self.keep + self.bias + gumbel).argmax(dim=-1)


class TorchEngine(Engine):
    """Kyutai STT architecture from the config's [modules.asr.model], random weights, real GPU cost per step."""

    name = "torch"
    blocking = True  # a step holds the GPU for milliseconds: the loop runs it in a worker thread
    default_step_ms = 0.0  # the cost is real, nothing to simulate

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        opts: dict[str, Any] = spec.options
        self.device = torch.device(opts.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
        on_gpu = self.device.type == "cuda"
        self.dtype = DTYPES[opts.get("dtype") or ("bfloat16" if on_gpu else "float32")]
        self.cfg = SttConfig.from_model_table(spec.model)
        b = spec.batch_size
        self.model = SttModel(self.cfg, b, self.device, self.dtype, seed=spec.seed)
        self.tokenizer = StandInTokenizer(self.cfg.audio_codebooks, self.cfg.audio_vocab_size, self.device, spec.seed + 1)
        self.sampler = TextSampler(
            self.cfg.text_out_vocab_size, float(opts.get("word_rate", 0.2)), float(opts.get("word_start_rate", 0.1)),
            self.device,
        )
        torch.manual_seed(spec.seed)  # the sampler draws from the default generator (the one CUDA graphs support)
        # Static input/output buffers: the same memory every step, as a CUDA graph needs, and pinned on the host
        # so the per-step copies are plain DMA.
        self._frames = torch.zeros(b, FRAME_SAMPLES, device=self.device)
        self._active = torch.zeros(b, dtype=torch.bool, device=self.device)
        self._out = torch.zeros(b, 1 + self.cfg.extra_heads, device=self.device)
        self._host_frames = torch.zeros(b, FRAME_SAMPLES, pin_memory=on_gpu)
        self._host_active = torch.zeros(b, dtype=torch.bool, pin_memory=on_gpu)
        use_graph = on_gpu and bool(opts.get("cuda_graph", True))
        self._graph: torch.cuda.CUDAGraph | None = self._capture() if use_graph else None

    @torch.no_grad()
    def _compute(self) -> None:
        audio = self.tokenizer(self._frames)
        logits, prs = self.model.step(audio, self._active)
        text = torch.where(self._active, self.sampler(logits), PAD)
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

    def warmup(self) -> None:
        # The real server's two warm-up steps on zeros; with no slot active they leave every slot as it was.
        for _ in range(2):
            self.step(np.zeros((self.spec.batch_size, FRAME_SAMPLES), np.float32), np.zeros(self.spec.batch_size, bool))

    def step(self, frames: np.ndarray, active: np.ndarray) -> StepOutput:
        self._host_frames.numpy()[:] = frames
        self._host_active.numpy()[:] = active
        self._frames.copy_(self._host_frames, non_blocking=True)
        self._active.copy_(self._host_active, non_blocking=True)
        if self._graph is not None:
            self._graph.replay()
        else:
            self._compute()
        out = self._out.cpu().numpy()  # the step's one synchronisation
        prs = out[:, 1:].copy() if self.cfg.extra_heads else None
        return StepOutput(tokens=out[:, 0].astype(np.int64), prs=prs)

    def reset_slot(self, slot: int) -> None:
        self.model.reset_slot(slot)

    def detokenize(self, tokens: list[int]) -> str:
        return "w" + "-".join(str(t) for t in tokens)  # random weights: the ids are all there is

    def close(self) -> None:
        self._graph = None
        del self.model
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
