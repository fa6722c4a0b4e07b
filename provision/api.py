"""Python API for the load commands: bring servers up before a run and get their ws:// URLs.

    results = provision.api.up("hosts.toml")          # waits for Ready; never raises for a host's failure
    urls = provision.api.targets(results)             # UserError naming each failed host
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from yapbench.errors import UserError

from .credentials import Secrets, load_secrets
from .executor import SshOptions
from .inventory import HostSpec, load_inventory
from .runner import Connector, HostResult, Progress, fabric_connector, run_hosts
from .steps.base import Step
from .steps.build import BuildServer
from .steps.lifecycle import CleanFiles, CleanSoftware, ServerStatus, Stop
from .steps.server import ServerFiles, StartServer, WaitReady
from .steps.system import Packages, Preflight
from .steps.toolchain import CudaToolkit, Rust

Hosts = str | Path | list[str] | Sequence[HostSpec]


def up_steps(host: HostSpec) -> list[Step]:
    return [Preflight(), Packages(), CudaToolkit(), Rust(), BuildServer(), ServerFiles(), StartServer(), WaitReady()]


def status_steps(host: HostSpec) -> list[Step]:
    return [ServerStatus()]


def stop_steps(host: HostSpec) -> list[Step]:
    return [Stop()]


def clean_steps(everything: bool) -> Callable[[HostSpec], list[Step]]:
    return lambda host: [Stop(), CleanFiles(), *([CleanSoftware()] if everything else [])]


def resolve_hosts(hosts: Hosts, overrides: dict[str, Any] | None = None) -> list[HostSpec]:
    if isinstance(hosts, (list, tuple)) and hosts and all(isinstance(h, HostSpec) for h in hosts):
        return list(hosts)  # type: ignore[arg-type]
    return load_inventory(hosts, overrides)  # type: ignore[arg-type]


def execute(hosts: Hosts, make_steps: Callable[[HostSpec], Sequence[Step]], *, plan: bool = False,
            ssh: SshOptions | None = None, secrets: Secrets | None = None, overrides: dict[str, Any] | None = None,
            max_workers: int = 16, log_dir: str | Path | None = None, connector: Connector | None = None,
            progress: Progress | None = None) -> list[HostResult]:
    specs = resolve_hosts(hosts, overrides)
    secrets = secrets or load_secrets()
    ssh = ssh or SshOptions(sudo_password=secrets.sudo_password)
    connector = connector or fabric_connector(ssh, secrets, Path(log_dir) if log_dir else None)
    kwargs: dict[str, Any] = {"progress": progress} if progress else {}
    return run_hosts(specs, make_steps, secrets=secrets, connector=connector, plan=plan, max_workers=max_workers,
                     **kwargs)


def up(hosts: Hosts, **kwargs: Any) -> list[HostResult]:
    """Install, build, configure and start the servers on every host and wait for Ready (KYUTAI_API_KEY needed)."""
    return execute(hosts, up_steps, **kwargs)


def plan(hosts: Hosts, **kwargs: Any) -> list[HostResult]:
    """What `up` would change: every check runs for real, nothing is applied."""
    return execute(hosts, up_steps, plan=True, **kwargs)


def status(hosts: Hosts, **kwargs: Any) -> list[HostResult]:
    return execute(hosts, status_steps, **kwargs)


def stop(hosts: Hosts, **kwargs: Any) -> list[HostResult]:
    return execute(hosts, stop_steps, **kwargs)


def clean(hosts: Hosts, *, everything: bool = False, **kwargs: Any) -> list[HostResult]:
    return execute(hosts, clean_steps(everything), **kwargs)


def targets(source: Sequence[HostResult] | Hosts, **kwargs: Any) -> list[str]:
    """ws:// URLs of Ready servers, from `up` results or (given hosts) from a fresh readiness check.

    Raises UserError naming every failed host, so a load test never starts against half a fleet by accident.
    """
    if not (isinstance(source, (list, tuple)) and source and all(isinstance(r, HostResult) for r in source)):
        source = execute(source, lambda h: [WaitReady()], plan=True, **kwargs)  # type: ignore[arg-type]
    results: Sequence[HostResult] = source  # type: ignore[assignment]
    failed = [f"{r.host}: {r.error.splitlines()[0] if r.error else 'failed'}" for r in results if not r.ok]
    not_ready = [r.host for r in results if r.ok and not r.targets]
    if failed or not_ready:
        raise UserError("servers not ready: " + "; ".join(failed + [f"{h}: not Ready" for h in not_ready]))
    return [url for r in results for url in r.targets]
