"""The STT server's TOML config (moshi-server `worker --config`), rendered from a vetted copy of Kyutai's files.

Shipping the config here (instead of fetching delayed-streams-modeling on the host) keeps deployments
reproducible; only `authorized_ids`, `batch_size`, `log_dir` and `instance_name` vary. The rendered text holds
the API key, so it only ever travels as an uploaded 0600 file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class ModelConfig:
    repo: str
    tokenizer: str
    asr_delay_in_tokens: int
    default_batch_size: int
    text_in_vocab_size: int
    text_out_vocab_size: int
    num_heads: int
    num_layers: int
    context: int
    extra_heads: bool  # the 1B model's semantic VAD, which produces Step messages


# delayed-streams-modeling configs/config-stt-en_fr-hf.toml and config-stt-en-hf.toml (docs/protocol.md §6)
MODELS = {
    "en_fr": ModelConfig("kyutai/stt-1b-en_fr-candle", "tokenizer_en_fr_audio_8000.model", 6, 64, 8001, 8000,
                         16, 16, 750, True),
    "en": ModelConfig("kyutai/stt-2.6b-en-candle", "tokenizer_en_audio_4000.model", 32, 16, 4001, 4000,
                      32, 48, 375, False),
}

_TEMPLATE = """\
# Rendered by yapbench provision; edits are overwritten by the next `yapbench provision up`.
static_dir = "./static/"
log_dir = {log_dir}
instance_name = {instance_name}
authorized_ids = {authorized_ids}

[modules.asr]
path = "/api/asr-streaming"
type = "BatchedAsr"
lm_model_file = "hf://{m.repo}/model.safetensors"
text_tokenizer_file = "hf://{m.repo}/{m.tokenizer}"
audio_tokenizer_file = "hf://{m.repo}/mimi-pytorch-e351c8d8@125.safetensors"
asr_delay_in_tokens = {m.asr_delay_in_tokens}
batch_size = {batch_size}
conditioning_learnt_padding = true
temperature = 0.0

[modules.asr.model]
audio_vocab_size = 2049
text_in_vocab_size = {m.text_in_vocab_size}
text_out_vocab_size = {m.text_out_vocab_size}
audio_codebooks = 32

[modules.asr.model.transformer]
d_model = 2048
num_heads = {m.num_heads}
num_layers = {m.num_layers}
dim_feedforward = 8192
causal = true
norm_first = true
bias_ff = false
bias_attn = false
context = {m.context}
max_period = 100000
use_conv_block = false
use_conv_bias = true
gating = "silu"
norm = "RmsNorm"
positional_embedding = "Rope"
conv_layout = false
conv_kernel_size = 3
kv_repeat = 1
max_seq_len = 40960
"""

_EXTRA_HEADS = """
[modules.asr.model.extra_heads]
num_heads = 4
dim = 6
"""


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def render(model: str, api_keys: list[str], *, batch_size: int | None, log_dir: str, instance_name: str) -> str:
    m = MODELS[model]
    text = _TEMPLATE.format(
        m=m,
        log_dir=_toml_str(log_dir),
        instance_name=_toml_str(instance_name),
        # replaces the upstream ["public_token"]: a deployment must not accept the well-known demo key
        authorized_ids="[" + ", ".join(_toml_str(k) for k in api_keys) + "]",
        batch_size=batch_size or m.default_batch_size,
    )
    return text + (_EXTRA_HEADS if m.extra_heads else "")
