"""Kyutai's own models for the `moshi` engine, built by the `moshi` package's loaders from the server's TOML.

The LM: `moshi.models.loaders.get_moshi_lm` with the keyword arguments that the config's [modules.asr.model] table
describes (read by `SttConfig.from_model_table`, the one parser of that table): a transformer without depformer
(dep_q 0), 32 audio codebooks and one text stream, all delays 0, the extra heads of the semantic VAD when the table
has them. Mimi: `loaders.get_mimi` with moshi's own Mimi configuration (the TOML does not describe Mimi), 32
codebooks; a `mimi` table in [yapbench.engine_options] overrides parts of it (the tests shrink it).

Weights: `lm_model_file`, `audio_tokenizer_file` and `text_tokenizer_file` as in moshi-server: a path, `file://`,
or `hf://REPO/FILE`, which is looked up in the local Hugging Face cache only. Nothing is ever downloaded. When the
LM file is on this machine the weights are loaded (and then Mimi's and the text tokenizer must be there too);
otherwise every weight is random. Option `weights`: "auto" (that rule, the default), "random" (ignore files that
are there, e.g. to time the step), "real" (an error unless all three files are there).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from moshi.models import loaders
from moshi.models.compression import MimiModel
from moshi.models.lm import LMModel

from ...errors import UserError
from .base import PAD, WORD_START
from .torch_model import SttConfig

WEIGHT_MODES = ("auto", "random", "real")


@dataclass(frozen=True, slots=True)
class WeightFiles:
    lm: Path
    mimi: Path
    text_tokenizer: Path


def local_file(name: str) -> Path | None:
    """The file a moshi-server path names, if this machine has it: a path, file://PATH, or hf://REPO/FILE found in
    the local Hugging Face cache. Never downloads."""
    if not name:
        return None
    if name.startswith("hf://"):
        parts = name.removeprefix("hf://").split("/")
        if len(parts) < 3:
            return None
        from huggingface_hub import try_to_load_from_cache  # moshi's own dependency; reads the cache only

        found = try_to_load_from_cache("/".join(parts[:2]), "/".join(parts[2:]))
        return Path(found) if isinstance(found, str) else None
    path = Path(name.removeprefix("file://")).expanduser()
    return path if path.is_file() else None


def find_weights(mode: str, lm_file: str, mimi_file: str, tokenizer_file: str) -> WeightFiles | None:
    """The weight files to load, or None for random weights (see the module docstring for `mode`)."""
    if mode not in WEIGHT_MODES:
        raise UserError(f"engine option weights = {mode!r}: expected one of {', '.join(WEIGHT_MODES)}")
    if mode == "random":
        return None
    named = {"lm_model_file": lm_file, "audio_tokenizer_file": mimi_file, "text_tokenizer_file": tokenizer_file}
    found = {key: local_file(value) for key, value in named.items()}
    if found["lm_model_file"] is None and mode == "auto":
        return None
    missing = [f"{key} = {named[key]!r}" for key, path in found.items() if path is None]
    if missing:
        raise UserError(f"real weights need every model file on this machine (nothing is downloaded); not found: "
                        f"{'; '.join(missing)}")
    return WeightFiles(found["lm_model_file"], found["audio_tokenizer_file"], found["text_tokenizer_file"])  # type: ignore[arg-type]


def lm_kwargs(cfg: SttConfig) -> dict[str, Any]:
    """moshi's LMModel arguments for the STT architecture that `cfg` (from the server's TOML) describes."""
    return {
        "dim": cfg.d_model, "num_heads": cfg.num_heads, "num_layers": cfg.num_layers,
        "hidden_scale": cfg.dim_feedforward / cfg.d_model, "context": cfg.context, "max_period": cfg.max_period,
        "causal": True, "gating": "silu", "norm": "rms_norm_f32", "positional_embedding": "rope",
        "layer_scale": None, "bias_proj": False,
        "n_q": cfg.audio_codebooks, "dep_q": 0, "delays": [0] * (cfg.audio_codebooks + 1),
        "card": cfg.audio_vocab_size - 1,  # the last audio id is the "initial" token
        "text_card": cfg.text_in_vocab_size - 1, "text_card_out": cfg.text_out_vocab_size,
        "existing_text_padding_id": PAD, "existing_text_end_padding_id": WORD_START,
        "extra_heads_num_heads": cfg.extra_heads, "extra_heads_dim": cfg.extra_head_dim,
    }


def mimi_config(overrides: dict[str, Any] | None) -> dict[str, Any]:
    """moshi's Mimi configuration, with each sub-table of `overrides` merged into its own."""
    config = copy.deepcopy(loaders._mimi_config)  # the loader's default when it gets None; public in all but name
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key].update(value)
        else:
            config[key] = value
    return config


def build_lm(cfg: SttConfig, weights: WeightFiles | None, device: torch.device, dtype: torch.dtype) -> LMModel:
    try:
        return loaders.get_moshi_lm(weights.lm if weights else None, lm_kwargs=lm_kwargs(cfg), device=device,
                                    dtype=dtype)
    except RuntimeError as exc:  # load_state_dict: keys or shapes that are not this architecture's
        if weights is None:
            raise
        raise UserError(f"{weights.lm}: not the weights of the model the config describes "
                        f"({str(exc).splitlines()[0][:300]})") from None


def build_mimi(weights: WeightFiles | None, overrides: dict[str, Any] | None, codebooks: int,
               device: torch.device, seed: int) -> MimiModel:
    config = mimi_config(overrides)
    try:
        mimi = loaders.get_mimi(weights.mimi if weights else None, config, device=device, num_codebooks=codebooks)
    except RuntimeError as exc:
        if weights is None:
            raise
        raise UserError(f"{weights.mimi}: not Mimi's weights ({str(exc).splitlines()[0][:300]})") from None
    if weights is None:
        _calibrate_codebooks(mimi, seed)
    return mimi


@torch.no_grad()
def _calibrate_codebooks(mimi: MimiModel, seed: int) -> None:
    """Centroids for untrained codebooks, drawn from what they will quantise.

    moshi's untrained codebooks are all zeros, and a random encoder's output is dominated by its biases, so random
    centroids would also give every frame the same tokens. Each codebook instead takes its centroids from the
    residuals it sees for speech-level noise (the first step of moshi's own k-means initialisation, without the
    iterations), stage by stage: the tokens then follow the audio, as real ones do. The nearest-centroid search
    costs the same either way.
    """
    gen = torch.Generator().manual_seed(seed)
    device = next(mimi.parameters()).device
    noise = 0.1 * torch.randn(8, 1, mimi.frame_size * 32, generator=gen)
    latent = mimi._encode_to_unquantized_latent(noise.to(device))  # (8, channels, 32 frames), not streaming
    for rvq in (mimi.quantizer.rvq_first, mimi.quantizer.rvq_rest):
        residual = rvq.input_proj(latent)
        for layer in rvq.vq.layers:
            vectors = residual.transpose(1, 2).reshape(-1, residual.shape[1])
            book = layer._codebook
            pick = torch.randint(len(vectors), (book.codebook_size,), generator=gen).to(device)
            jitter = 0.1 * vectors.std(dim=0) * torch.randn(book.embedding_sum.shape, generator=gen).to(device)
            book.embedding_sum.copy_(vectors[pick] + jitter)
            book.cluster_usage.fill_(1.0)
            book._initialized.fill_(1.0)
            book.register_buffer("_embedding", None, persistent=False)  # the cached centroids, recomputed on use
            residual = residual - layer.decode(layer.encode(residual))
