"""Build the server on the host it runs on (PTX is tied to the toolkit and the GPU's compute capability).

A fingerprint of what went into the build (crate or source tree, toolkit release, compute cap) is kept in the
state file; any difference rebuilds, the same fingerprint and a present binary skip the ten-minute compile.
"""

from __future__ import annotations

import shlex
from typing import Any

from ..context import Context, StepError, sha256
from ..jobs import run_detached
from .base import Check
from .toolchain import TOOLKIT_RELEASE, nvcc_release

BUILD_TIMEOUT_S = 3600
# The tree hash skips build output and VCS metadata so only source edits trigger a rebuild.
TREE_HASH = ("cd {src} && find . \\( -path ./target -o -path ./.git \\) -prune -o -type f -print0 "
             "| LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64")


def compute_cap(ctx: Context) -> str:
    """The inventory's override, else the lowest cap among the GPUs used (PTX for a lower arch JITs upward)."""
    if ctx.host.compute_cap:
        return ctx.host.compute_cap
    caps = [g.compute_cap for g in ctx.facts.gpus if g.index in {i.gpu for i in ctx.instances}]
    if not caps or not all(c.isdigit() for c in caps):
        raise StepError("cannot read compute_cap from nvidia-smi; set compute_cap in the inventory (e.g. 89)")
    return min(caps, key=int)


def server_binary(ctx: Context) -> str:
    h = ctx.host
    if h.source_dir:
        return f"{ctx.layout.bin_dir}/{h.bin_name}"
    return f"{ctx.layout.cargo_home}/bin/{h.crate}"


def desired_fingerprint(ctx: Context) -> dict[str, Any]:
    h = ctx.host
    fp: dict[str, Any] = {"compute_cap": compute_cap(ctx), "cuda": nvcc_release(ctx) or TOOLKIT_RELEASE,
                          "features": "cuda", "locked": True}
    if h.source_dir:
        r = ctx.run(TREE_HASH.format(src=shlex.quote(h.source_dir)))
        if not r.ok or len(r.stdout.strip()) != 64:
            raise StepError(f"cannot read source tree {h.source_dir}", r)
        fp.update(source_dir=h.source_dir, tree=r.stdout.strip(), package=h.source_package, bin=h.bin_name)
    else:
        fp.update(crate=h.crate, version=h.crate_version)
    return fp


def build_script(ctx: Context, fp: dict[str, Any], force: bool) -> str:
    lay, h, q = ctx.layout, ctx.host, shlex.quote
    lines = [
        "#!/usr/bin/env bash",
        "# written by yapbench provision: builds the STT server with CUDA",
        "set -euo pipefail",
        f'export PATH="{lay.build_path}"',
        f"export CARGO_HOME={q(lay.cargo_home)} CUDA_COMPUTE_CAP={fp['compute_cap']}",
        # cudarc and bindgen_cuda look for the toolkit under these names; all point at 12.4
        f"export CUDA_HOME={q(lay.cuda_home)} CUDA_ROOT={q(lay.cuda_home)} CUDA_PATH={q(lay.cuda_home)}"
        f" CUDA_TOOLKIT_ROOT_DIR={q(lay.cuda_home)}",
        # pyo3 links libpython even for STT (unmute's start_stt.sh does the same)
        "export LD_LIBRARY_PATH=\"$(python3 -c 'import sysconfig; print(sysconfig.get_config_var(\"LIBDIR\"))')"
        '${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"',
    ]
    if h.source_dir:
        lines += [
            f"cd {q(h.source_dir)}",
            f"cargo build --release --locked --features cuda -p {q(h.source_package)}",
            f"install -D -m 0755 target/release/{q(h.bin_name)} {q(server_binary(ctx))}",
        ]
    else:
        # --locked: the published lock pins candle 0.9.1 / cudarc 0.16.2; unlocked resolution breaks pre-Ampere
        force_flag = "--force " if force else ""
        lines.append(f"cargo install --locked --features cuda {force_flag}{q(h.crate)}@{h.crate_version}")
    return "\n".join(lines) + "\n"


def fingerprint_id(fp: dict[str, Any]) -> str:
    return sha256(repr(sorted(fp.items())))[:16]


class BuildServer:
    id = "build"

    def __init__(self, poll_s: float = 10.0):
        self.poll_s = poll_s

    def check(self, ctx: Context) -> Check:
        if not ctx.host.builds_server:
            return Check.skipped("server_command given")
        fp = desired_fingerprint(ctx)
        binary = server_binary(ctx)
        present = ctx.run(f"test -x {shlex.quote(binary)}").ok
        recorded = ctx.state.get("build")
        if not present:
            return Check.change(f"build {binary} (compute cap {fp['compute_cap']}, CUDA {fp['cuda']})")
        if recorded != fp:
            changed = sorted(k for k in fp.keys() | (recorded or {}).keys() if (recorded or {}).get(k) != fp.get(k))
            why = "no build fingerprint recorded" if not recorded else f"changed: {', '.join(changed)}"
            return Check.change(f"rebuild {binary} ({why})")
        return Check.ok(f"{binary} built for compute cap {fp['compute_cap']}, CUDA {fp['cuda']}")

    def apply(self, ctx: Context, check: Check) -> str:
        fp = desired_fingerprint(ctx)
        # Same version, other compute cap: cargo would say "already installed".
        force = ctx.run(f"test -x {shlex.quote(server_binary(ctx))}").ok
        log = run_detached(ctx, "build", build_script(ctx, fp, force), "server build failed",
                           timeout_s=BUILD_TIMEOUT_S, poll_s=self.poll_s)
        ctx.state["build"] = fp
        ctx.state["installed"]["server_binary"] = server_binary(ctx)
        ctx.save_state()
        return f"built {server_binary(ctx)} (log {log})"
