"""apt on fresh cloud hosts: non-interactive, waits for the dpkg lock, records exactly what it added."""

from __future__ import annotations

import shlex

from .context import Context, StepError

# `env` inside the command (not Fabric's env=): sudo's --preserve-env needs SETENV rights many sudoers lack.
APT_GET = "env DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a apt-get -q -y -o DPkg::Lock::Timeout=600"
LIST_INSTALLED = "dpkg-query -W -f='${db:Status-Abbrev} ${Package}\\n' 2>/dev/null"


def installed_packages(ctx: Context) -> set[str]:
    out = ctx.run(LIST_INSTALLED).stdout
    return {line.split()[1] for line in out.splitlines() if line.startswith("ii ") and len(line.split()) > 1}


def missing(ctx: Context, packages: list[str]) -> list[str]:
    have = installed_packages(ctx)
    return [p for p in packages if p not in have]


def install(ctx: Context, packages: list[str], what: str, *, timeout_s: int = 1800, update: bool = True) -> list[str]:
    """Install `packages` (no recommends) and remember every package this added, for an exact `clean --all`."""
    before = installed_packages(ctx)
    if update:
        r = ctx.run(f"timeout 600 {APT_GET} update", root=True, timeout=660)
        if not r.ok:
            hint = " (duplicate CUDA repo entries? see docs/provision.md)" if "Signed-By" in r.stderr + r.stdout else ""
            raise StepError(f"apt-get update failed{hint}", r)
    ctx.run_long(f"{APT_GET} install --no-install-recommends {' '.join(map(shlex.quote, packages))}", what,
                 timeout_s=timeout_s, root=True)
    added = sorted(installed_packages(ctx) - before)
    recorded = ctx.state["installed"].setdefault("apt_packages", [])
    recorded.extend(p for p in added if p not in recorded)
    ctx.save_state()
    return added


# Never removed, whatever a state file says: losing these takes the GPU driver down with them.
PROTECTED_PREFIXES = ("nvidia-driver", "libnvidia", "nvidia-utils", "nvidia-kernel", "cuda-drivers", "cuda-compat")


def purge(ctx: Context, packages: list[str]) -> None:
    """Exact names only (never globs): the driver and anything we did not add stay."""
    packages = [p for p in packages if not p.startswith(PROTECTED_PREFIXES)]
    if packages:
        ctx.run_long(f"{APT_GET} purge {' '.join(map(shlex.quote, packages))}", "apt-get purge failed",
                     timeout_s=1200, root=True)
