"""CUDA 12.4 toolkit from NVIDIA's apt repo (toolkit only, never a driver) and Rust via rustup."""

from __future__ import annotations

import re
import shlex

from .. import apt
from ..context import Context, StepError
from .base import Check

TOOLKIT_PACKAGE = "cuda-toolkit-12-4"
TOOLKIT_RELEASE = "12.4"
KEYRING_URL = "https://developer.download.nvidia.com/compute/cuda/repos/ubuntu2204/x86_64/cuda-keyring_1.1-1_all.deb"
REPO_MARKER = "developer.download.nvidia.com/compute/cuda/repos"
FIND_REPO_ENTRIES = f"grep -rlsF {REPO_MARKER} /etc/apt/sources.list /etc/apt/sources.list.d/"
RUSTUP = ("curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | "
          "sh -s -- -y --profile minimal --default-toolchain stable --no-modify-path")


def nvcc_release(ctx: Context) -> str | None:
    """The release of the toolkit's own nvcc (not whatever `nvcc` is first on PATH: Ubuntu's is 11.5)."""
    r = ctx.run(f"{shlex.quote(ctx.layout.cuda_home)}/bin/nvcc --version 2>/dev/null")
    m = re.search(r"release (\d+\.\d+)", r.stdout)
    return m.group(1) if r.ok and m else None


def repo_entries(ctx: Context) -> list[str]:
    return ctx.run(FIND_REPO_ENTRIES).stdout.split()


class CudaToolkit:
    id = "cuda"

    def check(self, ctx: Context) -> Check:
        if not ctx.host.builds_server:
            return Check.skipped("server_command given")
        release = nvcc_release(ctx)
        if release == TOOLKIT_RELEASE:
            return Check.ok(f"nvcc release {release} in {ctx.layout.cuda_home}")
        entries = repo_entries(ctx)
        repo = f"NVIDIA repo already in {', '.join(entries)}" if entries else "add NVIDIA repo (cuda-keyring)"
        found = f"found release {release}" if release else "no nvcc"
        return Check.change(f"install {TOOLKIT_PACKAGE} ({found} in {ctx.layout.cuda_home}); {repo}")

    def apply(self, ctx: Context, check: Check) -> str:
        done = []
        # A second entry for the same repo with another Signed-By breaks every `apt-get update`: add one only
        # when the image has none (many CUDA images ship cuda-ubuntu2204-x86_64.list or an old cuda.list).
        if not repo_entries(ctx):
            deb = "/tmp/yapbench-cuda-keyring.deb"
            ctx.must(f"curl -fsSL --retry 3 -o {deb} {KEYRING_URL}", "cannot download cuda-keyring", timeout=300)
            before = apt.installed_packages(ctx)
            ctx.must(f"dpkg -i {deb} && rm -f {deb}", "dpkg -i cuda-keyring failed", root=True, timeout=120)
            ctx.state["installed"].setdefault("apt_packages", []).extend(sorted(apt.installed_packages(ctx) - before))
            ctx.save_state()
            done.append("cuda-keyring")
        apt.install(ctx, [TOOLKIT_PACKAGE], f"installing {TOOLKIT_PACKAGE} failed", timeout_s=3600)
        release = nvcc_release(ctx)
        if release != TOOLKIT_RELEASE:
            raise StepError(f"{TOOLKIT_PACKAGE} installed but {ctx.layout.cuda_home}/bin/nvcc reports {release}")
        return "installed " + " + ".join([*done, TOOLKIT_PACKAGE])


class Rust:
    id = "rust"

    def check(self, ctx: Context) -> Check:
        if not ctx.host.builds_server:
            return Check.skipped("server_command given")
        r = ctx.run(f"{shlex.quote(ctx.layout.cargo)} --version 2>/dev/null")
        if r.ok and r.stdout.startswith("cargo "):
            return Check.ok(r.stdout.strip())
        return Check.change(f"install Rust with rustup (no cargo in {ctx.layout.cargo_home}/bin)")

    def apply(self, ctx: Context, check: Check) -> str:
        env = f"export CARGO_HOME={shlex.quote(ctx.layout.cargo_home)}; "
        ctx.run_long(env + RUSTUP, "rustup install failed", timeout_s=900)
        ctx.mark_installed("rust")
        return "installed Rust (stable, minimal profile)"
