"""Hosts to provision: a TOML inventory or a `user@host:port` list, validated into `HostSpec` records."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yapbench.errors import UserError

MODELS = ("en_fr", "en")
GpuSpec = str | int | list[int]  # "all", a count, or explicit indices


@dataclass(frozen=True)
class HostSpec:
    """One SSH target and how the server should run there. Paths may start with `~` (the remote home)."""

    hostname: str
    user: str | None = None
    ssh_port: int = 22
    name: str = ""  # label in tables; defaults to host[:port]
    key_file: str | None = None
    # server
    port: int = 8000  # first instance; instance i listens on port + i
    addr: str = "0.0.0.0"
    ws_host: str | None = None  # address load generators use; defaults to hostname
    model: str = "en_fr"
    batch_size: int | None = None  # None: the model config's own default
    gpus: GpuSpec = "all"
    compute_cap: str | None = None  # e.g. "89"; None: read from nvidia-smi
    session: str = "yap-stt"
    tmux_socket: str | None = None  # `tmux -L`; None is the user's default server
    ready_timeout: float = 900.0  # first start downloads weights and warms up
    # install and build
    base_dir: str = "~/yap-stt"
    hf_home: str | None = None  # None: <base_dir>/hf_cache
    cuda_home: str = "/usr/local/cuda-12.4"
    cargo_home: str = "~/.cargo"
    crate: str = "moshi-server"
    crate_version: str = "0.6.4"
    source_dir: str | None = None  # a moshi-server source tree on the host, built as `bin_name`
    source_package: str = "moshi-server"
    bin_name: str = "yap-server"
    server_command: str | None = None  # bring your own server: "{config}", "{port}", "{addr}" are filled in
    min_free_gb: float = 30.0
    path_prefix: tuple[str, ...] = ()  # prepended to PATH for every remote command
    python: str = "python3"  # load hosts (`provision workers`): the interpreter for yapbench's venv

    def __post_init__(self) -> None:
        if not self.name:
            label = self.hostname if self.ssh_port == 22 else f"{self.hostname}:{self.ssh_port}"
            object.__setattr__(self, "name", label)

    @property
    def builds_server(self) -> bool:
        return self.server_command is None

    @property
    def public_host(self) -> str:
        return self.ws_host or self.hostname

    @property
    def tunnel_addr(self) -> str:
        """Where an SSH channel opened on this host reaches the server: its listen address, loopback for a wildcard."""
        return "127.0.0.1" if self.addr in ("0.0.0.0", "::") else self.addr


_FIELDS = {f.name: f for f in dataclasses.fields(HostSpec)}
_INTS = {"ssh_port", "port", "batch_size"}
_FLOATS = {"ready_timeout", "min_free_gb"}


def parse_address(address: str) -> dict[str, Any]:
    """`[user@]host[:port]` into hostname/user/ssh_port (IPv6 hosts need the TOML form with `ssh_port`)."""
    user, _, hostport = address.rpartition("@")
    host, sep, port = hostport.partition(":")
    if not host or (sep and not port.isdigit()):
        raise UserError(f"host {address!r}: expected [user@]host[:port]")
    out: dict[str, Any] = {"hostname": host}
    if user:
        out["user"] = user
    if port:
        out["ssh_port"] = int(port)
    return out


def _coerce(key: str, value: Any, where: str) -> Any:
    if key not in _FIELDS:
        raise UserError(f"{where}: unknown key {key!r} (known: {', '.join(sorted(_FIELDS))})")
    bad = False
    if key in _INTS:
        bad = not isinstance(value, int) or isinstance(value, bool)
    elif key in _FLOATS:
        bad = not isinstance(value, (int, float)) or isinstance(value, bool)
        value = float(value) if not bad else value
    elif key == "gpus":
        bad = not (
            value == "all"
            or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)
            or (isinstance(value, list) and value and all(isinstance(i, int) and i >= 0 for i in value))
        )
    elif key == "path_prefix":
        bad = not (isinstance(value, list) and all(isinstance(p, str) for p in value))
        value = tuple(value) if not bad else value
    elif key == "compute_cap":
        value = str(value).replace(".", "")
        bad = not value.isdigit()
    else:
        bad = not isinstance(value, str)
    if bad:
        raise UserError(f"{where}: bad value for {key!r}: {value!r}")
    if key == "model" and value not in MODELS:
        raise UserError(f"{where}: model must be one of {', '.join(MODELS)}, not {value!r}")
    return value


def host_from_mapping(raw: dict[str, Any], defaults: dict[str, Any], where: str) -> HostSpec:
    merged: dict[str, Any] = {}
    for source in (defaults, raw):
        for key, value in source.items():
            if key == "address":
                if not isinstance(value, str):
                    raise UserError(f"{where}: address must be a string")
                merged.update(parse_address(value))
            else:
                merged[key] = _coerce(key, value, where)
    if "hostname" not in merged:
        raise UserError(f"{where}: needs `address` or `hostname`")
    return HostSpec(**merged)


def load_inventory(hosts: str | Path | list[str], overrides: dict[str, Any] | None = None) -> list[HostSpec]:
    """A TOML file path, or `user@host:port` items (a list, or one comma/space separated string).

    `overrides` (from command-line options) win over the file's `[defaults]` but not over per-host keys.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if isinstance(hosts, (str, Path)) and (str(hosts).endswith(".toml") or Path(hosts).is_file()):
        path = Path(hosts)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"inventory {path}: no such file") from None
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"inventory {path}: not valid TOML ({exc})") from None
        unknown = set(data) - {"defaults", "hosts"}
        if unknown:
            raise UserError(f"inventory {path}: unknown tables {sorted(unknown)} (expected [defaults], [[hosts]])")
        defaults = {**data.get("defaults", {}), **overrides}
        entries = data.get("hosts", [])
        if not isinstance(entries, list) or not entries:
            raise UserError(f"inventory {path}: no [[hosts]] entries")
        specs = [host_from_mapping(e, defaults, f"inventory {path} host #{i + 1}") for i, e in enumerate(entries)]
    else:
        items = hosts if isinstance(hosts, list) else str(hosts).replace(",", " ").split()
        if not items:
            raise UserError("no hosts given")
        specs = [host_from_mapping({"address": a}, overrides, f"host {a!r}") for a in items]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise UserError(f"duplicate hosts in inventory: {sorted({n for n in names if names.count(n) > 1})}")
    return specs


def local_path(path: str | None) -> str | None:
    """Expand `~` in local file options (key files, known_hosts)."""
    return os.path.expanduser(path) if path else None

