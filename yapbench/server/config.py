"""The server's configuration: moshi-server's TOML (docs/protocol.md §6) plus yapbench's own `[yapbench]` table.

moshi-server ignores tables it does not know (serde without deny_unknown_fields), so one file can drive both the
real server and this one. Command-line options override the file; the file overrides the defaults below.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..errors import UserError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "config-stt-en_fr-hf.toml"
FRAME_RATE = 12.5
_ENV_VAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class FaultConfig:
    """Fault injection; every field off by default. See docs/server.md "Faults"."""

    exit_after_s: float = 0.0  # the whole process exits abruptly (os._exit) this long after start
    error_after_steps: int = 0  # a session gets Error{"fault injected: model error"} after N of its frames
    stall_after_steps: int = 0  # a session's server side stops reading and sending after N of its frames
    ready_delay_ms: float = 0.0  # Ready comes this much later than the real server would send it
    close_1011_after_steps: int = 0  # a session is closed with code 1011 after N of its frames
    garbage_every: int = 0  # every K-th message sent to a session is undecodable bytes
    drop_words: float = 0.0  # this fraction of Words (and their EndWords) is never sent
    sessions: float = 1.0  # fraction of sessions the per-session faults apply to (chosen by seed)

    @property
    def any_session_fault(self) -> bool:
        return bool(self.error_after_steps or self.stall_after_steps or self.ready_delay_ms
                    or self.close_1011_after_steps or self.garbage_every or self.drop_words)


@dataclass(frozen=True)
class ServerConfig:
    # --- moshi-server's keys
    authorized_ids: frozenset[str] = frozenset({"public_token"})
    static_dir: str = "./static/"
    log_dir: str = ""
    instance_name: str = "yapbench"
    path: str = "/api/asr-streaming"
    batch_size: int = 64
    asr_delay_in_tokens: int = 6
    temperature: float = 0.0
    lm_model_file: str = ""
    audio_tokenizer_file: str = ""
    text_tokenizer_file: str = ""
    model: dict[str, Any] = field(default_factory=dict)  # [modules.asr.model], as read
    # --- yapbench's keys ([yapbench] table or command line)
    addr: str = "127.0.0.1"
    port: int = 8000
    engine: str = "synthetic"
    engine_options: dict[str, Any] = field(default_factory=dict)  # [yapbench.engine_options]
    step_ms: float | None = None  # fixed simulated cost per step; None: the engine's default
    step_ms_per_slot: float = 0.0  # plus this many ms per slot of batch_size (a GPU step costs the whole batch)
    seed: int = 0
    event_log: str = ""
    log_level: str = "info"
    manifest: str = ""  # samples the synthetic engine recognises; "" = yapbench's samples/manifest.csv
    faults: FaultConfig = FaultConfig()
    # Keep-alive timings (docs/protocol.md §5); tests shorten them, nobody else should.
    ping_every_s: float = 10.0
    long_timeout_s: float = 120.0

    @property
    def extra_heads(self) -> int:
        """Number of extra heads (semantic VAD); 0 means the model sends no Step messages."""
        heads = self.model.get("extra_heads")
        return int(heads.get("num_heads", 0)) if isinstance(heads, dict) else 0

    @property
    def short_timeout_s(self) -> float:
        return 2 * self.ping_every_s

    def step_cost_s(self, default_ms: float) -> float:
        base = default_ms if self.step_ms is None else self.step_ms
        return max(0.0, base + self.step_ms_per_slot * self.batch_size) / 1000.0


def expand_env(value: Any) -> Any:
    """moshi-server's `$VAR` substitution in every string (an unset variable becomes empty), recursively."""
    if isinstance(value, str):
        return _ENV_VAR.sub(lambda m: os.environ.get(m.group(1), ""), value)
    if isinstance(value, list):
        return [expand_env(v) for v in value]
    if isinstance(value, dict):
        return {k: expand_env(v) for k, v in value.items()}
    return value


def _require(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in table:
        raise UserError(f"{where}: missing key {key!r}")
    value = table[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise UserError(f"{where}: {key!r} has the wrong type ({type(value).__name__})")
    return value


def _asr_module(modules: dict[str, Any], where: str) -> dict[str, Any]:
    batched = [(name, m) for name, m in modules.items() if isinstance(m, dict) and m.get("type") == "BatchedAsr"]
    if not batched:
        kinds = sorted({str(m.get("type")) for m in modules.values() if isinstance(m, dict)})
        found = ", ".join(kinds) or "none"
        raise UserError(f"{where}: no [modules.*] table with type = \"BatchedAsr\" (found: {found})")
    if len(batched) > 1:
        raise UserError(f"{where}: several BatchedAsr modules ({', '.join(n for n, _ in batched)}); serve one")
    return batched[0][1]


def _typed_subset(cls: type, table: dict[str, Any], where: str) -> dict[str, Any]:
    """The keys of `table` that are fields of the dataclass `cls`; unknown keys are an error (typos matter here)."""
    known = {f.name: f for f in fields(cls)}
    out = {}
    for key, value in table.items():
        if key not in known:
            raise UserError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(known))})")
        out[key] = value
    return out


def load_config(path: str | Path | None = None) -> ServerConfig:
    """Read a moshi-server TOML config (default: the stt-1b-en_fr one); UserError names what is wrong."""
    p = Path(path) if path else DEFAULT_CONFIG
    where = f"config {p}"
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{where}: cannot be read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{where}: not valid TOML ({exc})") from None
    raw = expand_env(raw)
    kind: type
    for key, kind in (("static_dir", str), ("log_dir", str), ("instance_name", str), ("authorized_ids", list)):
        _require(raw, key, kind, where)
    asr = _asr_module(raw.get("modules") or {}, where)
    where_asr = f"{where} [modules.asr]"
    for key, kind in (("path", str), ("lm_model_file", str), ("text_tokenizer_file", str),
                      ("audio_tokenizer_file", str), ("model", dict)):
        _require(asr, key, kind, where_asr)
    batch_size = _require(asr, "batch_size", int, where_asr)
    delay = _require(asr, "asr_delay_in_tokens", int, where_asr)
    if batch_size < 1 or delay < 0:
        raise UserError(f"{where_asr}: batch_size must be >= 1 and asr_delay_in_tokens >= 0")
    conditioning_delay = asr.get("conditioning_delay")
    if conditioning_delay is not None:
        # batched_asr.rs: the conditioning delay (seconds) overrides asr_delay_in_tokens this way.
        delay = int(float(conditioning_delay) * FRAME_RATE) + 1
    temperature = asr.get("temperature")
    own = dict(raw.get("yapbench") or {})
    faults = FaultConfig(**_typed_subset(FaultConfig, own.pop("faults", {}) or {}, f"{where} [yapbench.faults]"))
    own_fields = _typed_subset(ServerConfig, own, f"{where} [yapbench]")
    config = ServerConfig(
        authorized_ids=frozenset(str(x) for x in raw["authorized_ids"]),
        static_dir=raw["static_dir"],
        log_dir=raw["log_dir"],
        instance_name=raw["instance_name"],
        path=asr["path"],
        batch_size=batch_size,
        asr_delay_in_tokens=delay,
        temperature=float(temperature) if temperature is not None else 0.0,
        lm_model_file=asr["lm_model_file"],
        audio_tokenizer_file=asr["audio_tokenizer_file"],
        text_tokenizer_file=asr["text_tokenizer_file"],
        model=asr["model"],
        faults=faults,
    )
    return replace(config, **own_fields)


def with_overrides(config: ServerConfig, **overrides: Any) -> ServerConfig:
    """Command-line values (None = not given) on top of the file; `fault_*` names go to the faults."""
    fault_values = {k[len("fault_"):]: v for k, v in overrides.items() if k.startswith("fault_") and v is not None}
    plain = {k: v for k, v in overrides.items() if not k.startswith("fault_") and v is not None}
    if fault_values:
        plain["faults"] = replace(config.faults, **fault_values)
    if "api_keys" in plain:
        plain["authorized_ids"] = frozenset(plain.pop("api_keys"))
    return replace(config, **plain)
