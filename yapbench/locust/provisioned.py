"""`--provision hosts.toml`: bring the servers up (provision.api) before the load, on the master only; then point
the load at them, and sample their GPUs and scrape their /metrics over the same SSH access (so telemetry works
even where only the WebSocket port, or no port at all, is open to the generator).

Workers need nothing of this: Locust's master sends them the host list with every spawn.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import UserError
from ..gpu import RemoteGpuSampler
from ..servermetrics import METRICS_PATH, Fetch, ScrapeError

log = logging.getLogger("yapbench")


def ssh_options(opts):
    from provision.executor import SshOptions

    return SshOptions(known_hosts=opts.known_hosts or None, accept_new_host_keys=opts.accept_new_host_keys)


def bring_up(opts) -> str:
    """Run `provision up` on the inventory and wait for Ready; the comma-separated ws:// targets."""
    from provision import api

    log.info("yapbench: provisioning the servers of %s (this can take a while on a fresh host)", opts.provision)
    results = api.up(opts.provision, ssh=ssh_options(opts))
    for r in results:
        log.info("yapbench: %s: %s", r.host, "ready" if r.ok else f"FAILED: {r.error}")
    return ",".join(api.targets(results))  # UserError names every host that is not Ready


def remote_gpu_samplers(opts, run_dir: Path) -> list[RemoteGpuSampler]:
    """One nvidia-smi stream per provisioned host, into the run's gpu.csv; a host that fails only logs a note."""
    from provision.api import resolve_hosts
    from provision.credentials import load_secrets
    from provision.executor import connect

    samplers = []
    secrets = load_secrets()
    for host in resolve_hosts(opts.provision):
        try:
            executor = connect(host, ssh_options(opts), redact=secrets.redact)
        except Exception as exc:  # the load goes on without this host's telemetry
            log.warning("yapbench: no GPU telemetry from %s: %s", host.name, exc)
            continue
        sampler = RemoteGpuSampler(executor.conn, run_dir, host=host.name).start()
        if sampler.note:
            log.warning("yapbench: %s: %s", host.name, sampler.note)
        samplers.append(sampler)
    return samplers


def remote_metrics_fetchers(opts, targets: list[str]) -> tuple[dict[str, Fetch], list]:
    """For each target served by a provisioned host: GET /metrics through an SSH channel to it. Returns the
    fetchers and the executors to close at the end; a host that cannot be reached only logs a line (its targets
    are then scraped over plain HTTP)."""
    from urllib.parse import urlsplit

    from provision.api import resolve_hosts
    from provision.credentials import load_secrets
    from provision.executor import connect
    fetchers: dict[str, Fetch] = {}
    executors = []
    secrets = load_secrets()
    for host in resolve_hosts(opts.provision):
        mine = [t for t in targets if urlsplit(t).hostname == host.public_host]
        if not mine:
            continue
        try:
            executor = connect(host, ssh_options(opts), redact=secrets.redact)
        except Exception as exc:
            log.warning("yapbench: no server metrics over SSH from %s: %s", host.name, exc)
            continue
        executors.append(executor)
        for target in mine:
            port = urlsplit(target).port or 80  # the default of ws://, as the sessions connect
            fetchers[target] = _channel_fetch(executor, host.tunnel_addr, port, host.name)
    return fetchers, executors


def _channel_fetch(executor, addr: str, port: int, name: str) -> Fetch:
    from provision.readiness import http_get

    def fetch() -> str:
        try:
            return http_get(executor.open_channel, addr, port, METRICS_PATH, timeout=2.0).decode("utf-8", "replace")
        except OSError as exc:
            raise ScrapeError(f"{name} (over SSH): {exc}") from None

    return fetch


def bring_up_targets(environment) -> None:
    """--provision: the servers up, and the load pointed at them; a UserError names the inventory."""
    opts = environment.parsed_options
    try:
        environment.host = bring_up(opts)
    except UserError as exc:
        raise UserError(f"--provision {opts.provision}: {exc}") from None
