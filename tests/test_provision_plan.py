"""provision's planning and idempotency logic against a fake executor (no SSH)."""

from __future__ import annotations

import io
import json
import tarfile
import tomllib

import pytest

from provision import sttconfig, workers
from provision.context import StepError
from provision.inventory import HostSpec, load_inventory
from provision.layout import make_instances, make_layout, select_gpus
from provision.runner import Status, run_steps
from provision.steps.base import Check
from provision.steps.build import BuildServer, compute_cap, desired_fingerprint
from provision.steps.lifecycle import removable
from provision.steps.server import ServerFiles
from provision.steps.system import Packages, Preflight
from provision.steps.toolchain import CudaToolkit, Rust
from yapbench.errors import UserError

from provision_fakes import facts_output, gpu_host_rules, make_ctx

DRIVER_PACKAGES = ("nvidia-driver", "cuda-drivers", "libnvidia", "cuda-12-4 ", "apt-get install -y cuda ")


# --- inventory --------------------------------------------------------------------------------------------------


def test_inventory_toml_defaults_and_per_host(tmp_path):
    inv = tmp_path / "hosts.toml"
    inv.write_text('[defaults]\nuser = "ubuntu"\nbatch_size = 32\ngpus = "all"\n\n'
                   '[[hosts]]\naddress = "gpu1.example:2222"\ncompute_cap = "8.9"\n\n'
                   '[[hosts]]\naddress = "root@gpu2"\ngpus = [0, 1]\nport = 9000\n')
    a, b = load_inventory(inv, {"model": "en", "batch_size": None})
    assert (a.hostname, a.ssh_port, a.user, a.compute_cap, a.batch_size, a.model) == (
        "gpu1.example", 2222, "ubuntu", "89", 32, "en")
    assert (b.user, b.gpus, b.port, b.name) == ("root", [0, 1], 9000, "gpu2")


def test_inventory_host_list_and_errors(tmp_path):
    hosts = load_inventory("ubuntu@a:22, root@b:2200", {"key_file": "~/.ssh/k"})
    assert [(h.user, h.hostname, h.ssh_port, h.key_file) for h in hosts] == [
        ("ubuntu", "a", 22, "~/.ssh/k"), ("root", "b", 2200, "~/.ssh/k")]
    bad = tmp_path / "bad.toml"
    for text, msg in (('[[hosts]]\naddress = "a"\nbatchsize = 3\n', "unknown key 'batchsize'"),
                      ('[[hosts]]\naddress = "a"\ngpus = "two"\n', "bad value for 'gpus'"),
                      ('[[hosts]]\naddress = "a"\nmodel = "de"\n', "model must be one of"),
                      ('[[hosts]]\naddress = "a"\n[[hosts]]\naddress = "a"\n', "duplicate hosts"),
                      ("[defaults]\n", "no [[hosts]]")):
        bad.write_text(text)
        with pytest.raises(UserError, match=msg.replace("[", r"\[")):
            load_inventory(bad)
    with pytest.raises(UserError, match="no such file"):
        load_inventory(tmp_path / "missing.toml")


# --- preflight ----------------------------------------------------------------------------------------------------


def test_preflight_passes_on_ubuntu_with_driver_550():
    ctx, _ = make_ctx()
    check = Preflight().check(ctx)
    assert "driver CUDA 12.4" in check.reason and "sudo" in check.reason


@pytest.mark.parametrize("change, expect", [
    ((r"^nvidia-smi$", (0, "| Driver Version: 535.104  CUDA Version: 12.2 |")), "CUDA 12.2 < 12.4"),
    ((r"^printf 'home=", (0, facts_output(os_id="debian", os_version="12"))), "debian 12 x86_64 is not Ubuntu 22.04"),
    ((r"^printf 'home=", (0, facts_output(**{"which_nvidia-smi": ""}))), "no NVIDIA driver"),
    ((r"^printf 'home=", (0, facts_output(which_sudo=""))), "not root and no sudo"),
    ((r"^sudo -n true$", (1, "", "sudo: a password is required")), "YAPBENCH_SUDO_PASSWORD"),
    ((r'^df -Pk', (0, "/dev/sda1 1 1 1048576 1% /\n")), "1 GB free"),
])
def test_preflight_failures_name_the_problem(change, expect):
    ctx, ex = make_ctx()
    ex.prepend(*change)
    with pytest.raises(StepError, match=expect.replace("(", r"\(")):
        Preflight().check(ctx)


def test_root_without_sudo_binary_runs_root_commands_directly():
    ctx, ex = make_ctx(gpu_host_rules(uid="0", which_sudo=""))
    assert Preflight().check(ctx).reason.endswith("root")
    ctx.run("apt-get update", root=True)
    assert ex.log[-1] == ("apt-get update", False)
    ctx2, ex2 = make_ctx()
    ctx2.run("apt-get update", root=True)
    assert ex2.log[-1] == ("apt-get update", True)


# --- GPUs, instances, compute capability ------------------------------------------------------------------------


def test_instances_one_per_gpu_with_consecutive_ports():
    ctx, _ = make_ctx(gpus="all", port=8000)
    assert [(i.gpu, i.port, i.session) for i in ctx.instances] == [(0, 8000, "yap-stt"), (1, 8001, "yap-stt-1")]
    assert compute_cap(ctx) == "89"  # the lowest of the GPUs used: PTX JITs upward, not downward
    one, _ = make_ctx(gpus=[0])
    assert [i.gpu for i in one.instances] == [0] and compute_cap(one) == "90"
    forced, _ = make_ctx(gpus=1, compute_cap="86")
    assert compute_cap(forced) == "86"


def test_gpu_selection_errors_and_stand_in_servers():
    host = HostSpec("h", gpus=[3])
    with pytest.raises(UserError, match="not present"):
        select_gpus(host, make_ctx()[0].facts.gpus)
    with pytest.raises(UserError, match="no GPU"):
        select_gpus(HostSpec("h"), ())
    stand_in = HostSpec("h", gpus=2, server_command="srv --port {port}")
    assert select_gpus(stand_in, ()) == [None, None]
    insts = make_instances(stand_in, make_layout(stand_in, "/root"), [None, None])
    assert [i.dir for i in insts] == ["/root/yap-stt/instances/8000", "/root/yap-stt/instances/8001"]


# --- packages and CUDA --------------------------------------------------------------------------------------------


def test_packages_lists_only_missing():
    ctx, ex = make_ctx()
    ex.prepend(r"^dpkg-query -W", (0, "ii  build-essential\nii  tmux\nii  curl\nrc  cmake\n"))
    reason = Packages().check(ctx).reason
    assert "cmake" in reason and "tmux" not in reason and "build-essential" not in reason


def _cuda_host(repo_files: str):
    """nvcc appears once apt-get installed the toolkit; dpkg reports the keyring after dpkg -i."""
    ctx, ex = make_ctx()
    installed = lambda: any("install --no-install-recommends cuda-toolkit-12-4" in c for c in ex.commands())  # noqa: E731
    ex.prepend(r"/usr/local/cuda-12.4/bin/nvcc --version",
               lambda c: (0, "Cuda compilation tools, release 12.4, V12.4.131") if installed() else (127, ""))
    ex.prepend(r"^grep -rlsF developer.download.nvidia.com", (0 if repo_files else 1, repo_files))
    ex.prepend(r"^dpkg-query -W",
               lambda c: (0, "ii  tmux\n" + ("ii  cuda-toolkit-12-4\nii  cuda-nvcc-12-4\n" if installed() else "")))
    ex.prepend(r"apt-get|dpkg -i|^curl", (0, ""))
    ex.prepend(r"^mkdir -p .* && install -m|^mv -f", (0, ""))
    return ctx, ex


def test_cuda_uses_existing_repo_entry_and_installs_toolkit_only():
    ctx, ex = _cuda_host("/etc/apt/sources.list.d/cuda-ubuntu2204-x86_64.list\n")
    check = CudaToolkit().check(ctx)
    assert check.needed and "NVIDIA repo already in /etc/apt/sources.list.d/cuda-ubuntu2204-x86_64.list" in check.reason
    CudaToolkit().apply(ctx, check)
    assert not ex.ran("cuda-keyring")  # a second entry would break apt with a Signed-By conflict
    [install] = ex.ran("apt-get .*install")
    assert install.endswith("install --no-install-recommends cuda-toolkit-12-4'")
    assert install.startswith("timeout -k 30 3600 bash -c "
                              "'env DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a apt-get")
    assert all(("sudo" if s else "") == "sudo" for c, s in ex.log if "apt-get" in c)
    assert not [c for c in ex.commands() for bad in DRIVER_PACKAGES if bad in c]
    state = json.loads(ex.files["/home/ubuntu/yap-stt/state.json.tmp"])
    assert state["installed"]["apt_packages"] == ["cuda-nvcc-12-4", "cuda-toolkit-12-4"]
    assert CudaToolkit().check(ctx).reason.startswith("nvcc release 12.4")


def test_cuda_adds_keyring_when_no_repo_entry():
    ctx, ex = _cuda_host("")
    check = CudaToolkit().check(ctx)
    assert "add NVIDIA repo (cuda-keyring)" in check.reason
    CudaToolkit().apply(ctx, check)
    [dl] = ex.ran("^curl .*cuda-keyring_1.1-1_all.deb")
    [(dpkg, sudo)] = [(c, s) for c, s in ex.log if c.startswith("dpkg -i")]
    assert sudo and "sudo" not in dl


# --- Rust and build -----------------------------------------------------------------------------------------------


def test_rust_installs_with_rustup_once():
    ctx, ex = make_ctx()
    check = Rust().check(ctx)
    assert check.needed and "/home/ubuntu/.cargo/bin" in check.reason
    ex.prepend(r"^timeout -k 30 900 bash -c|^mkdir -p .* && install -m|^mv -f", (0, ""))
    Rust().apply(ctx, check)
    [cmd] = ex.ran("rustup")
    assert "sh.rustup.rs" in cmd and "--no-modify-path" in cmd and "--profile minimal" in cmd
    assert json.loads(ex.files["/home/ubuntu/yap-stt/state.json.tmp"])["installed"]["rust"] is True
    ex.prepend(r"/home/ubuntu/.cargo/bin/cargo --version", (0, "cargo 1.89.0 (c24e10642 2025-06-23)\n"))
    assert Rust().check(ctx).reason == "cargo 1.89.0 (c24e10642 2025-06-23)"


def test_build_fingerprint_decides_rebuild():
    ctx, ex = make_ctx(gpus=[1])
    ex.prepend(r"/usr/local/cuda-12.4/bin/nvcc --version", (0, "release 12.4, V12.4.131"))
    assert BuildServer().check(ctx).reason.startswith("build /home/ubuntu/.cargo/bin/moshi-server (compute cap 89")
    ex.prepend(r"^test -x /home/ubuntu/.cargo/bin/moshi-server$", (0, ""))
    assert "no build fingerprint recorded" in BuildServer().check(ctx).reason
    ctx.state["build"] = desired_fingerprint(ctx)
    assert not BuildServer().check(ctx).needed
    ctx.state["build"] = {**ctx.state["build"], "compute_cap": "90"}
    assert BuildServer().check(ctx).reason.endswith("(changed: compute_cap)")


# --- config ---------------------------------------------------------------------------------------------------------


def test_stt_config_render_is_valid_toml_with_only_our_key():
    text = sttconfig.render("en_fr", ["k'1\"x"], batch_size=None, log_dir="/srv/logs", instance_name="stt-8000")
    cfg = tomllib.loads(text)
    assert cfg["authorized_ids"] == ["k'1\"x"]
    asr = cfg["modules"]["asr"]
    assert asr["batch_size"] == 64 and asr["model"]["extra_heads"] == {"num_heads": 4, "dim": 6}
    en = tomllib.loads(sttconfig.render("en", ["k"], batch_size=8, log_dir="/l", instance_name="x"))["modules"]["asr"]
    assert en["batch_size"] == 8 and "extra_heads" not in en["model"] and en["asr_delay_in_tokens"] == 32


def test_config_step_reasons_never_contain_the_key():
    ctx, ex = make_ctx(gpus=1, api_key="s3cr3t-key")
    check = ServerFiles().check(ctx)
    assert check.needed and "config.toml (missing)" in check.reason and "s3cr3t" not in check.reason


# --- runner -------------------------------------------------------------------------------------------------------


class _Step:
    def __init__(self, id, check=None, exc=None):
        self.id, self._check, self.exc, self.applied = id, check, exc, False

    def check(self, ctx):
        if self.exc:
            raise self.exc
        return self._check

    def apply(self, ctx, check):
        self.applied = True
        return "did it"


def test_runner_statuses_and_failure_blocks_the_rest():
    ctx, _ = make_ctx()
    steps = [_Step("a", Check.ok("fine")), _Step("b", Check.change("needs work")), _Step("c", Check.skipped("n/a")),
             _Step("d", exc=StepError("broke")), _Step("e", Check.change("x"))]
    results = run_steps(ctx, steps)
    assert [r.status for r in results] == [Status.OK, Status.CHANGED, Status.SKIPPED, Status.FAILED, Status.SKIPPED]
    assert results[1].message == "did it" and results[4].message == "after failed d" and not steps[4].applied
    plan_ctx, _ = make_ctx(plan=True)
    step = _Step("b", Check.change("needs work"))
    [r] = run_steps(plan_ctx, [step])
    assert r.status is Status.WOULD_CHANGE and not step.applied


def test_runner_turns_unexpected_errors_into_a_row_and_redacts():
    ctx, _ = make_ctx(api_key="topsecret")
    [r] = run_steps(ctx, [_Step("x", exc=RuntimeError("socket closed while sending topsecret"))])
    assert r.status is Status.FAILED and "topsecret" not in r.error and "RuntimeError" in r.message


def test_clean_refuses_home_and_shallow_paths():
    assert removable("/home/u/yap-stt", "/home/u")
    assert not removable("/home/u", "/home/u") and not removable("/home", "/home/u") and not removable("/tmp", "/x")


# --- workers ------------------------------------------------------------------------------------------------------


def test_worker_source_tarball_is_deterministic_and_complete():
    workers.source_tarball.cache_clear()
    data = workers.source_tarball()
    workers.source_tarball.cache_clear()
    assert workers.source_tarball() == data
    names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
    assert "locustfiles/stt.py" in names and "samples/manifest.csv" in names and "pyproject.toml" in names
    assert not [n for n in names if n.startswith("tests/") or "__pycache__" in n]


def test_worker_plan_and_launcher_keep_the_key_in_a_file():
    ctx, ex = make_ctx(api_key="wk-secret")
    steps = workers.up_steps("master.example", 5557, 4)(ctx.host)
    ex.prepend(r"python3 -c 'import sys, venv", (0, "3.11.9\n"))
    ctx.plan = True
    results = run_steps(ctx, steps)
    assert [r.status for r in results] == [Status.OK, Status.WOULD_CHANGE, Status.WOULD_CHANGE]
    script = workers.launcher(ctx, "master.example", 5557, 4)
    assert "--worker --master-host master.example --master-port 5557 --processes 4" in script
    assert "wk-secret" not in script and "api_key" in script
    with pytest.raises(UserError, match="--master"):
        workers.up_steps(None)
