"""The reference server's GPU engine on Kyutai's own model code: Mimi plus the STT LM from the `moshi` package.

One step, for every slot of the batch (device_step.py has the host side):
1. Mimi encodes the slot's 80 ms frame into 32 codebook tokens (SEANet encoder, 8-layer transformer with its
   own KV cache, downsampling to 12.5 Hz, residual quantiser), streaming per slot.
2. The LM takes the previous text token and those audio tokens (moshi's `LMGen` convention, delays all 0: a
   slot's first step gets the initial tokens instead), runs one transformer step over its ring KV cache, and
   gives the text logits and, for models with extra heads, the semantic-VAD heads (Step.prs: class 0 of each).
3. The text token: with real weights greedy at the config's temperature 0 (moshi-server's choice), sampled at
   higher temperatures; with random weights, `TextSampler` (torch_engine.py) biases the padding tokens on the
   standardised logits so that the random model still produces a speech-like word rate, with noise hashed from
   the logits (`hash_uniform`), so that a slot's words depend only on its own audio, like a real model's.

Slots: moshi's streaming modules keep per-row state and honour an exec mask (rows whose mask is false keep their
state) and per-row resets, exactly what the batched server needs; `set_exec_mask` runs before each step (it is
its own small CUDA graph in moshi); `reset_streaming` for the slots reset since the last step, all at once, at the
start of the next step.

CUDA graphs as moshi itself uses them (moshi.utils.compile.CUDAGraphed): Mimi's streaming state graphs its SEANet
encoder and encoder transformer, the LM's forward pass is graphed as LMGen does; the rest (Mimi's downsampling
and quantiser, sampling, heads: about 200 small kernels) runs eagerly, as in moshi. One graph around the whole
step, as the torch engine captures, failed on an H200 with an illegal memory access (not diagnosed).

Words: with real weights a word's pieces go through the config's sentencepiece text tokenizer; with random weights
they read "w<id>-<id>". Models and weights: moshi_build.py. Options ([yapbench.engine_options]): device, dtype
(the LM's; Mimi stays float32 as moshi's loader builds it), cuda_graph (device_step.py), compile (moshi's own
torch.compile of its norms, gating and rotary embedding; default off), weights ("auto"), mimi
(overrides of moshi's Mimi configuration), word_rate and word_start_rate (random weights only).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from moshi.utils.compile import CUDAGraphed, no_compile, no_cuda_graph

from .base import PAD, ModelSpec
from .device_step import REPORTED_CLASS, DeviceStepEngine
from .moshi_build import build_lm, build_mimi, find_weights
from .torch_engine import TextSampler, placeholder_word
from .torch_model import SttConfig


def hash_uniform(z: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Noise in [0, 1) that is a fixed function of each logit and its token id (an integer hash of both): sampling
    is then deterministic per slot (the same audio gives the same words, as a real model's greedy decoding does)
    and independent of the other rows of the batch and of how many steps ran."""
    h = (z * 65536).round().long() * 0x9E3779B1 + ids * 0x85EBCA77
    for shift, mult in ((15, 0x2C1B3C6D), (12, 0x297A2D39), (15, 1)):
        h = ((h ^ (h >> shift)) * mult) & 0xFFFFFFFF
    return (h >> 8).float() / float(1 << 24)


class MoshiEngine(DeviceStepEngine):
    name = "moshi"

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        opts: dict[str, Any] = spec.options
        self.cfg = SttConfig.from_model_table(spec.model)
        self.weights = find_weights(str(opts.get("weights", "auto")), spec.lm_model_file, spec.audio_tokenizer_file,
                                    spec.text_tokenizer_file)
        self.mimi = build_mimi(self.weights, opts.get("mimi"), self.cfg.audio_codebooks, self.device, spec.seed + 1)
        self.lm = build_lm(self.cfg, self.weights, self.device, self.dtype)
        self._streams = [self.mimi, self.lm]
        b = spec.batch_size
        for module in self._streams:
            module.streaming_forever(b)
        self._pos = torch.zeros(b, dtype=torch.long, device=self.device)  # steps taken, per slot
        self._last_text = torch.full((b,), self.lm.text_initial_token_id, device=self.device)
        initial = [self.lm.text_initial_token_id] + [self.lm.initial_token_id] * self.lm.num_audio_codebooks
        self._initial = torch.tensor(initial, device=self.device).view(1, -1, 1)
        # moshi wraps its norms, gating and rotary embedding in torch.compile, compiled at the first call (about a
        # minute per shape on a CPU). Off unless asked for: under a CUDA graph it only fuses a few element-wise
        # kernels over (batch, d_model) tensors, negligible next to reading the KV caches.
        compile_ = bool(opts.get("compile", False))
        self._compile_scope = contextlib.nullcontext if compile_ else no_compile
        self._reset_rows: list[int] = []
        self._text_tokenizer = None
        self._sampler: TextSampler | None = None
        if self.weights is not None:
            import sentencepiece  # moshi's own dependency

            self._text_tokenizer = sentencepiece.SentencePieceProcessor(model_file=str(self.weights.text_tokenizer))
        else:
            self._vocab_ids = torch.arange(self.cfg.text_out_vocab_size, device=self.device)
            self._sampler = TextSampler(self.cfg.text_out_vocab_size, float(opts.get("word_rate", 0.2)),
                                        float(opts.get("word_start_rate", 0.1)), self.device)
        # CUDA graphs as moshi uses them: Mimi's streaming state graphs its encoder and encoder transformer, and
        # the LM's forward pass is graphed here as LMGen does it; each captures itself at its second call.
        self._forward_text = CUDAGraphed(self.lm.forward_text, disable=self.device.type != "cuda")
        self._graph_scope = contextlib.nullcontext if bool(opts.get("cuda_graph", True)) else no_cuda_graph
        self._start(self.cfg.extra_heads, capture=False)

    @property
    def real_weights(self) -> bool:
        return self.weights is not None

    def _prepare(self) -> None:
        rows, self._reset_rows = self._reset_rows, []
        if rows:
            # All the resets since the last step at once: moshi resets every streaming module's state (hundreds of
            # small kernels), a cost per call, not per slot; and here it runs in the step's thread, not on the
            # server's event loop, which calls reset_slot.
            mask = torch.zeros(self.spec.batch_size, dtype=torch.bool)
            mask[rows] = True
            mask = mask.to(self.device)
            for module in self._streams:
                module.reset_streaming(mask)
            self._pos.masked_fill_(mask, 0)
            self._last_text.masked_fill_(mask, self.lm.text_initial_token_id)
        with self._graph_scope():  # set_exec_mask is a small CUDA graph of its own in moshi
            for module in self._streams:
                module.set_exec_mask(self._active)

    def _compute(self) -> None:
        with self._compile_scope(), self._graph_scope():
            self._compute_step()

    def _compute_step(self) -> None:
        codes = self.mimi.encode(self._frames[:, None, :])  # (B, codebooks, 1)
        tokens = torch.cat([self._last_text[:, None, None], codes], dim=1)
        tokens = torch.where((self._pos == 0)[:, None, None], self._initial, tokens)
        hidden, logits = self._forward_text(tokens)  # (B, 1, dim), (B, 1, 1, text vocab)
        sampled = self._sample(logits[:, 0, 0].float())
        self._last_text.copy_(torch.where(self._active, sampled, self._last_text))
        self._pos.add_(self._active.long())
        # One output tensor so the step ends with a single device-to-host copy (ids < 2^24 are exact in fp32).
        self._out[:, 0] = torch.where(self._active, sampled, PAD).float()
        for i, head in enumerate(self.lm.extra_heads):
            self._out[:, 1 + i] = head(hidden[:, 0]).float().softmax(dim=-1)[:, REPORTED_CLASS]

    def _sample(self, logits: torch.Tensor) -> torch.Tensor:
        if self._sampler is not None:
            # Random weights: logits standardised per row to N(0, 1), the scale TextSampler's bias assumes.
            z = (logits - logits.mean(dim=-1, keepdim=True)) / logits.std(dim=-1, keepdim=True).clamp_min(1e-6)
            return self._sampler(z, hash_uniform(z, self._vocab_ids))
        temperature = self.spec.temperature
        if temperature <= 0:
            return logits.argmax(dim=-1)
        gumbel = -torch.log(-torch.log(torch.rand_like(logits).clamp_(1e-20, 1.0)))
        return (logits / temperature + gumbel).argmax(dim=-1)

    def reset_slot(self, slot: int) -> None:
        self._reset_rows.append(slot)  # applied at the start of the next step, before its compute (_prepare)

    def detokenize(self, tokens: list[int]) -> str:
        if self._text_tokenizer is None:
            return placeholder_word(tokens)
        return self._text_tokenizer.decode(tokens)

    def _drop_model(self) -> None:
        del self.mimi, self.lm, self._streams, self._forward_text
