"""A GPU engine without dependencies beyond torch: Kyutai STT's transformer (torch_model.py) with random weights
and a stand-in for Mimi, one batched step per 80 ms frame (the host side: device_step.py). The `moshi` engine runs
Kyutai's own model code instead, Mimi included.

Audio tokens: the real server runs Mimi (a SEANet conv encoder plus an 8-layer transformer at 12.5 Hz, about 1/40
of the 1B's parameters) to turn a frame into 32 codebook tokens. Its cost is not modelled: `StandInTokenizer`
derives the 32 tokens from a fixed random projection of the frame, so tokens follow the audio (silence gives one
constant token set) at negligible cost.

Text: the weights are random, so the sampler biases the padding tokens to give realistic word traffic, about
`word_rate` word pieces per frame, the rest padding (3) and word starts (0); the server's word logic
(yapbench.server.words) turns them into Word/EndWord as for any engine. A word's pieces map to a placeholder
"w<id>-<id>...". The config's `temperature` is not honoured: greedy decoding of random logits would repeat one
token per slot, not produce word traffic.

Options ([yapbench.engine_options]): device, dtype and cuda_graph (device_step.py), word_rate (0.2),
word_start_rate (0.1).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ...protocol import FRAME_SAMPLES
from .base import FIRST_WORD_TOKEN, PAD, WORD_START, ModelSpec
from .device_step import REPORTED_CLASS, DeviceStepEngine
from .torch_model import SttConfig, SttModel


class StandInTokenizer(torch.nn.Module):
    """Frame -> codebook tokens by a fixed random projection, quantised; stands in for Mimi (not its cost)."""

    proj: torch.Tensor  # a buffer, declared for the type checker

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

    bias: torch.Tensor  # buffers, declared for the type checker
    keep: torch.Tensor

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

    def forward(self, logits: torch.Tensor, uniform: torch.Tensor | None = None) -> torch.Tensor:
        """Gumbel-max sampling (as moshi-server does for temperature > 0): no host round trip. `uniform`: the
        U(0, 1) noise to use, one per logit; by default drawn from the default generator."""
        u = torch.rand_like(logits) if uniform is None else uniform
        gumbel = -torch.log(-torch.log(u.clamp(1e-20, 1.0)))
        return (logits * self.keep + self.bias + gumbel).argmax(dim=-1)


class TorchEngine(DeviceStepEngine):
    """Kyutai STT architecture from the config's [modules.asr.model], random weights, real GPU cost per step."""

    name = "torch"

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        opts: dict[str, Any] = spec.options
        self.cfg = SttConfig.from_model_table(spec.model)
        self.model = SttModel(self.cfg, spec.batch_size, self.device, self.dtype, seed=spec.seed)
        self.tokenizer = StandInTokenizer(self.cfg.audio_codebooks, self.cfg.audio_vocab_size, self.device,
                                          spec.seed + 1)
        self.sampler = TextSampler(
            self.cfg.text_out_vocab_size, float(opts.get("word_rate", 0.2)), float(opts.get("word_start_rate", 0.1)),
            self.device,
        )
        self._start(self.cfg.extra_heads)

    def _compute(self) -> None:
        audio = self.tokenizer(self._frames)
        logits, prs = self.model.step(audio, self._active)
        text = torch.where(self._active, self.sampler(logits), PAD)
        self.model.commit_text(text, self._active)
        # One output tensor so the step ends with a single device-to-host copy (ids < 2^24 are exact in fp32).
        self._out[:, 0] = text.float()
        self._out[:, 1:] = prs[:, :, REPORTED_CLASS]

    def reset_slot(self, slot: int) -> None:
        self.model.reset_slot(slot)

    def detokenize(self, tokens: list[int]) -> str:
        return placeholder_word(tokens)

    def _drop_model(self) -> None:
        del self.model


def placeholder_word(tokens: list[int]) -> str:
    """A word's text when the weights are random: the ids are all there is."""
    return "w" + "-".join(str(t) for t in tokens)
