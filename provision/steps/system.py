"""Preflight gates (before any change) and the Ubuntu packages the build and the server need."""

from __future__ import annotations

from ..context import Context, StepError
from ..facts import version_tuple
from .. import apt
from .base import Check, CheckOnly

MIN_DRIVER_CUDA = "12.4"  # candle's PTX is JIT-compiled by the driver: it must know CUDA 12.4 (PROVISION §2.2)
BUILD_PACKAGES = ["build-essential", "pkg-config", "libssl-dev", "cmake", "git", "curl", "ca-certificates",
                  "tmux", "python3-dev", "iproute2"]


def _privileges(ctx: Context) -> str:
    """'root' or 'sudo'; raises when neither works. Passwordless sudo is tried first so nothing ever waits on a
    prompt."""
    if ctx.facts.is_root:
        return "root"
    if not ctx.facts.has("sudo"):
        raise StepError("not root and no sudo binary: log in as root or install sudo")
    if ctx.run("sudo -n true").ok:
        return "sudo"
    if not ctx.secrets.sudo_password:
        raise StepError("sudo wants a password: set YAPBENCH_SUDO_PASSWORD or pass --ask-sudo-pass")
    r = ctx.ex.run("true", sudo=True, timeout=30)
    if not r.ok:
        raise StepError("sudo refused the password", r)
    return "sudo"


def _free_gb(ctx: Context) -> float:
    r = ctx.must('df -Pk "$HOME" | tail -n 1', "cannot read free disk space")
    fields = r.stdout.split()
    return int(fields[3]) / 1024**2 if len(fields) > 3 and fields[3].isdigit() else 0.0


class Preflight(CheckOnly):
    """Gates that must hold before anything changes; a stand-in server (server_command) only needs tmux."""

    id = "preflight"

    def check(self, ctx: Context) -> Check:
        f, h = ctx.facts, ctx.host
        if not f.home:
            raise StepError("could not read basic facts ($HOME) from the host")
        if not h.builds_server:
            if not f.has("tmux"):
                raise StepError("tmux is not installed on the host")
            return Check.ok(f"{f.os_id} {f.os_version}, {len(ctx.instances)} server(s), server_command given")
        problems = []
        if (f.os_id, f.os_version) != ("ubuntu", "22.04") or f.arch != "x86_64":
            problems.append(f"{f.os_id or '?'} {f.os_version or '?'} {f.arch} is not Ubuntu 22.04 x86_64")
        if not f.has("nvidia-smi"):
            problems.append("no NVIDIA driver (nvidia-smi missing); install one first, provision never touches drivers")
        elif not f.driver_cuda or version_tuple(f.driver_cuda) < version_tuple(MIN_DRIVER_CUDA):
            problems.append(f"driver supports CUDA {f.driver_cuda or '?'} < {MIN_DRIVER_CUDA}: needs an R550+ driver")
        elif not f.gpus:
            problems.append("nvidia-smi lists no GPU")
        free = _free_gb(ctx)
        if free < h.min_free_gb:
            problems.append(f"{free:.0f} GB free in $HOME, need {h.min_free_gb:.0f} GB (toolkit, Rust, build, weights)")
        try:
            who = _privileges(ctx)
        except StepError as exc:
            problems.append(str(exc))
            who = "?"
        if problems:
            raise StepError("; ".join(problems))
        gpu_names = sorted({g.name for g in f.gpus})
        return Check.ok(f"Ubuntu 22.04, driver CUDA {f.driver_cuda}, {len(f.gpus)}x {'/'.join(gpu_names)}, "
                        f"{free:.0f} GB free, {who}")


class Packages:
    """Build tools and runtime libraries from Ubuntu (never the distro's nvidia-cuda-toolkit: it is CUDA 11.5)."""

    id = "packages"

    def check(self, ctx: Context) -> Check:
        if not ctx.host.builds_server:
            return Check.skipped("server_command given")
        todo = apt.missing(ctx, BUILD_PACKAGES)
        return Check.change(f"install {' '.join(todo)}") if todo else Check.ok("all present")

    def apply(self, ctx: Context, check: Check) -> str:
        added = apt.install(ctx, apt.missing(ctx, BUILD_PACKAGES), "apt-get install failed")
        return f"installed {len(added)} package(s)"
