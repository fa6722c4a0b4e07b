"""Kyutai STT 1B (stt-1b-en_fr) as a streaming, batched PyTorch network with random weights.

The architecture follows docs/protocol.md §6 ([modules.asr.model] of config-stt-en_fr-hf.toml): a causal pre-norm
transformer (d_model 2048, 16 layers, 16 heads, RMSNorm, RoPE with max_period 100000, SiLU-gated feed-forward, no
biases) over the sum of 32 audio-codebook embeddings and one text embedding, with a ring KV cache of `context`
(750) steps, an 8000-way text head and 4 extra heads of 6 classes (the semantic VAD behind Step.prs). The weights
are random: the tokens mean nothing, but every step does the real model's matrix and memory work, so the GPU time
per batched step (the server's capacity) is real.

Streaming state is per slot, as in moshi-server's batched model: each row of the batch has its own position and its
own ring of keys and values. One `step` advances every active row by one 80 ms frame; inactive rows are computed
(the real server runs the full batch too) but their state is left as it was.

Not modelled: the depformer (the STT config has none) and the Mimi audio tokenizer, which `StandInTokenizer` in
torch_engine.py replaces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# moshi-server's [modules.asr.model.transformer] keys this network implements, with the only values it supports;
# anything else would be a different architecture and so a different cost.
SUPPORTED = {"causal": True, "norm_first": True, "bias_ff": False, "bias_attn": False, "use_conv_block": False,
             "gating": "silu", "norm": "RmsNorm", "positional_embedding": "Rope", "kv_repeat": 1}


@dataclass(frozen=True, slots=True)
class SttConfig:
    d_model: int = 2048
    num_heads: int = 16
    num_layers: int = 16
    dim_feedforward: int = 8192
    context: int = 750
    max_period: float = 100_000.0
    audio_codebooks: int = 32
    audio_vocab_size: int = 2049
    text_in_vocab_size: int = 8001
    text_out_vocab_size: int = 8000
    extra_heads: int = 4
    extra_head_dim: int = 6

    @classmethod
    def from_model_table(cls, model: dict[str, Any]) -> SttConfig:
        """From a moshi-server [modules.asr.model] table (docs/protocol.md §6); missing keys take the 1B's values.

        Raises ValueError for a key whose value needs another architecture (GQA, LayerNorm, biases, ...).
        """
        if not model:
            return cls()
        transformer = dict(model.get("transformer") or {})
        for key, wanted in SUPPORTED.items():
            if key in transformer and transformer[key] != wanted:
                raise ValueError(f"transformer.{key} = {transformer[key]!r} is not supported (only {wanted!r})")
        heads = model.get("extra_heads") or {}
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {k: v for k, v in {**model, **transformer}.items() if k in known}
        values["extra_heads"] = int(heads.get("num_heads", 0))  # no table: no semantic VAD, no Step (2.6B)
        values["extra_head_dim"] = int(heads.get("dim", 6))
        return cls(**values)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def ff_hidden(self) -> int:
        # moshi's ActivationGating: with dim_feedforward == 4 * d_model the gated hidden width is 21/8 * d_model
        # (5376 for the 1B), so the three matrices hold about the parameters of a plain 4x feed-forward.
        if self.dim_feedforward == 4 * self.d_model:
            return 21 * self.d_model // 8
        return 2 * self.dim_feedforward // 3

    @property
    def text_initial_token(self) -> int:
        return self.text_in_vocab_size - 1  # the input vocabulary has one extra id: "no text yet"


STT_1B = SttConfig()


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps
        self.alpha = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Computed in fp32 as moshi does: bf16 squares lose too much precision.
        var = x.float().pow(2).mean(dim=-1, keepdim=True)
        return (x.float() * torch.rsqrt(var + self.eps)).to(x.dtype) * self.alpha


def rope(x: torch.Tensor, pos: torch.Tensor, max_period: float) -> torch.Tensor:
    """Rotary embedding of `x` (B, H, D) at per-row positions `pos` (B,), interleaved pairs as in moshi."""
    half = x.shape[-1] // 2
    freqs = torch.exp(torch.arange(half, device=x.device, dtype=torch.float32) * (-math.log(max_period) / half))
    angle = pos.float()[:, None] * freqs[None, :]  # (B, D/2)
    cos, sin = torch.cos(angle)[:, None, :], torch.sin(angle)[:, None, :]
    xr, xi = x.float().unflatten(-1, (half, 2)).unbind(-1)
    out = torch.stack((xr * cos - xi * sin, xr * sin + xi * cos), dim=-1)
    return out.flatten(-2).to(x.dtype)


class Layer(nn.Module):
    def __init__(self, cfg: SttConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.norm1 = RMSNorm(cfg.d_model)
        self.in_proj = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        self.norm2 = RMSNorm(cfg.d_model)
        self.linear_in = nn.Linear(cfg.d_model, 2 * cfg.ff_hidden, bias=False)
        self.linear_out = nn.Linear(cfg.ff_hidden, cfg.d_model, bias=False)

    def forward(
        self, x: torch.Tensor, pos: torch.Tensor, active: torch.Tensor, cache_k: torch.Tensor, cache_v: torch.Tensor
    ) -> torch.Tensor:
        """One token per row. x: (B, d_model); cache_k/v: (B, H, context, head_dim), updated in place."""
        cfg = self.cfg
        b = x.shape[0]
        q, k, v = self.in_proj(self.norm1(x)).view(b, 3, cfg.num_heads, cfg.head_dim).unbind(1)
        q, k = rope(q, pos, cfg.max_period), rope(k, pos, cfg.max_period)
        # Keys carry their absolute position through RoPE, so the ring's order does not matter to attention.
        rows = torch.arange(b, device=x.device)
        slot = pos % cfg.context
        keep = active[:, None, None]
        cache_k[rows, :, slot] = torch.where(keep, k, cache_k[rows, :, slot])
        cache_v[rows, :, slot] = torch.where(keep, v, cache_v[rows, :, slot])
        # A row at position p has written ring entries 0..p until the ring wraps, then all of them.
        valid = torch.arange(cfg.context, device=x.device)[None, :] <= pos[:, None]
        attn = F.scaled_dot_product_attention(q[:, :, None, :], cache_k, cache_v, attn_mask=valid[:, None, None, :])
        x = x + self.out_proj(attn.reshape(b, cfg.d_model))
        gate, up = self.linear_in(self.norm2(x)).chunk(2, dim=-1)
        return x + self.linear_out(F.silu(gate) * up)


class SttModel(nn.Module):
    """The network and its per-slot streaming state for a fixed batch of `batch_size` slots."""

    # Buffers (register_buffer), declared for the type checker.
    codebook_offsets: torch.Tensor
    cache_k: torch.Tensor
    cache_v: torch.Tensor
    pos: torch.Tensor
    last_text: torch.Tensor

    def __init__(
        self, cfg: SttConfig, batch_size: int, device: torch.device, dtype: torch.dtype, seed: int = 0
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.batch_size = batch_size
        # Built on the device in the target dtype: the 1B's KV caches at batch 400 are ~39 GB in bf16 and would
        # not survive a detour through fp32 or host memory.
        with torch.device(device):
            # All 32 codebook tables in one: one gather and one sum instead of 32 lookups per step.
            self.audio_emb = nn.Embedding(cfg.audio_codebooks * cfg.audio_vocab_size, cfg.d_model, dtype=dtype)
            self.text_emb = nn.Embedding(cfg.text_in_vocab_size, cfg.d_model, dtype=dtype)
            self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.num_layers)).to(dtype)
            self.out_norm = RMSNorm(cfg.d_model).to(dtype)
            self.text_linear = nn.Linear(cfg.d_model, cfg.text_out_vocab_size, bias=False, dtype=dtype)
            self.extra_heads = nn.Linear(cfg.d_model, cfg.extra_heads * cfg.extra_head_dim, bias=False, dtype=dtype)
            self.register_buffer("codebook_offsets", torch.arange(cfg.audio_codebooks) * cfg.audio_vocab_size, False)
            shape = (cfg.num_layers, batch_size, cfg.num_heads, cfg.context, cfg.head_dim)
            self.register_buffer("cache_k", torch.zeros(shape, dtype=dtype), persistent=False)
            self.register_buffer("cache_v", torch.zeros(shape, dtype=dtype), persistent=False)
            self.register_buffer("pos", torch.zeros(batch_size, dtype=torch.long), persistent=False)
            self.register_buffer("last_text", torch.full((batch_size,), cfg.text_initial_token), persistent=False)
        self._init_weights(seed, torch.device(device))

    @torch.no_grad()
    def _init_weights(self, seed: int, device: torch.device) -> None:
        gen = torch.Generator(device=device).manual_seed(seed)
        for p in self.parameters():
            if p.dim() == 2:
                # 1/sqrt(fan_in) keeps activations near unit scale through 16 random layers (no NaNs in bf16);
                # for text_linear it makes logits exactly N(0, 1) per token, since out_norm gives |h|^2 = d_model.
                p.normal_(0.0, 1.0 / math.sqrt(p.shape[1]), generator=gen)
        self.audio_emb.weight.mul_(math.sqrt(self.cfg.d_model / self.cfg.audio_codebooks))
        self.text_emb.weight.mul_(math.sqrt(self.cfg.d_model))

    @torch.no_grad()
    def step(
        self, audio_tokens: torch.Tensor, active: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One 80 ms step for the whole batch. audio_tokens: (B, codebooks) long; active: (B,) bool.

        Returns the text logits (B, text_out_vocab) in fp32 and the extra heads' probabilities (B, heads, 6).
        The caller samples the text token and hands it back through `commit_text`.
        """
        x = self.audio_emb(audio_tokens + self.codebook_offsets).sum(dim=1) + self.text_emb(self.last_text)
        for i, layer in enumerate(self.layers):
            x = layer(x, self.pos, active, self.cache_k[i], self.cache_v[i])
        h = self.out_norm(x)
        logits = self.text_linear(h).float()
        heads = self.extra_heads(h).float().view(x.shape[0], self.cfg.extra_heads, self.cfg.extra_head_dim)
        prs = heads.softmax(dim=-1)
        self.pos += active.long()
        return logits, prs

    @torch.no_grad()
    def commit_text(self, tokens: torch.Tensor, active: torch.Tensor) -> None:
        """The sampled text token becomes each active slot's next text input, as in the real model's loop."""
        self.last_text.copy_(torch.where(active, tokens, self.last_text))

    @torch.no_grad()
    def reset_slot(self, i: int) -> None:
        """Forget slot i's stream (a new connection takes the slot); the other slots are not touched."""
        self.cache_k[:, i].zero_()
        self.cache_v[:, i].zero_()
        self.pos[i] = 0
        self.last_text[i] = self.cfg.text_initial_token
