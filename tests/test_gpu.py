"""GPU telemetry: NVML absent or failing, nvidia-smi parsing, the remote sampler over a real command runner, and a
real OS thread that keeps sampling while gevent's loop is blocked."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import invoke
import pynvml
import pytest

from yapbench.gpu import GPU_COLUMNS, GpuSampler, RemoteGpuSampler, parse_nvidia_smi_line

REPO = Path(__file__).resolve().parent.parent


def nvml_works() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


def rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "gpu.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == GPU_COLUMNS
        return list(reader)


@pytest.mark.skipif(nvml_works(), reason="this machine has a GPU")
def test_no_nvml_here_gives_a_note_and_no_file(tmp_path: Path) -> None:
    sampler = GpuSampler(tmp_path).start()
    sampler.stop()
    assert sampler.note and sampler.note.startswith("no GPU telemetry") and "\n" not in sampler.note
    assert not (tmp_path / "gpu.csv").exists()


def test_nvml_library_failing_to_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail() -> None:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    monkeypatch.setattr(pynvml, "nvmlInit", fail)
    sampler = GpuSampler(tmp_path).start()
    sampler.stop()
    assert sampler.note and "NVML" in sampler.note
    assert not (tmp_path / "gpu.csv").exists()


def test_pynvml_not_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    sampler = GpuSampler(tmp_path).start()
    sampler.stop()
    assert sampler.note and "pynvml" in sampler.note


FAKE_NVML = textwrap.dedent(
    """
    # A stand-in pynvml module: two GPUs, the second without power readings.
    import sys, types
    fake = types.ModuleType("pynvml")
    class NVMLError(Exception):
        pass
    fake.NVMLError = NVMLError
    fake.NVML_TEMPERATURE_GPU = 0
    fake.NVML_CLOCK_SM = 1
    fake.nvmlInit = lambda: None
    fake.nvmlShutdown = lambda: None
    fake.nvmlDeviceGetCount = lambda: 2
    fake.nvmlDeviceGetHandleByIndex = lambda i: i
    fake.nvmlDeviceGetName = lambda h: b"Fake GPU" if h else "Fake GPU"
    fake.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=40 + h)
    fake.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=2 * 2**30, total=80 * 2**30)
    def power(h):
        if h:
            raise NVMLError("not supported")
        return 312_450
    fake.nvmlDeviceGetPowerUsage = power
    fake.nvmlDeviceGetTemperature = lambda h, s: 51
    fake.nvmlDeviceGetClockInfo = lambda h, c: 1980
    sys.modules["pynvml"] = fake
    """
)


def test_sampler_thread_runs_while_gevent_loop_is_blocked(tmp_path: Path) -> None:
    # In a subprocess: gevent's monkey-patching is process-wide. The main greenlet spins without yielding for
    # 1.2 s; a greenlet sampler would write nothing meanwhile, a real OS thread writes a row per GPU per 0.1 s.
    script = FAKE_NVML + textwrap.dedent(
        f"""
        from gevent import monkey
        monkey.patch_all()
        import time
        from yapbench.gpu import GpuSampler
        sampler = GpuSampler({str(tmp_path)!r}, interval_s=0.1).start()
        assert sampler.note is None, sampler.note
        end = time.perf_counter() + 1.2
        while time.perf_counter() < end:
            pass
        print(sampler.rows)
        sampler.stop()
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.strip()) >= 16  # ~12 samples x 2 GPUs during the busy loop
    got = rows(tmp_path)
    first, second = got[0], got[1]
    assert first["gpu"] == "0" and second["gpu"] == "1" and second["name"] == "Fake GPU"
    assert (first["util_pct"], first["mem_used_mib"], first["mem_total_mib"]) == ("40", "2048.0", "81920.0")
    assert (first["power_w"], first["temp_c"], first["sm_clock_mhz"]) == ("312.45", "51", "1980")
    assert second["power_w"] == ""  # unsupported field: empty, not a crash


CANNED = """\
0, NVIDIA H100 80GB HBM3, 37, 40123, 81559, 312.45, 51, 1980
1, NVIDIA A10G, [N/A], 1, 23028, [N/A], 30, 345
2, Tesla T4, [Not Supported], 3, 15360, 27.84, 41, 585
index, name, utilization.gpu [%], memory.used [MiB]
NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.

"""


def test_parse_canned_nvidia_smi_output() -> None:
    samples = [parse_nvidia_smi_line(line, 1000.0) for line in CANNED.splitlines()]
    h100, a10g, t4, *rest = samples
    assert rest == [None, None, None]
    assert h100 is not None
    assert (h100.gpu, h100.name, h100.util_pct, h100.power_w) == (0, "NVIDIA H100 80GB HBM3", 37.0, 312.45)
    assert (h100.mem_used_mib, h100.mem_total_mib, h100.temp_c, h100.sm_clock_mhz, h100.t) == (
        40123, 81559, 51, 1980, 1000.0)
    assert a10g is not None and a10g.util_pct is None and a10g.power_w is None and a10g.mem_used_mib == 1
    assert t4 is not None and t4.util_pct is None and t4.power_w == 27.84


STUB_SMI = """#!/bin/sh
# nvidia-smi stand-in: the query's line format, repeated at -lms cadence until killed.
echo "$*" > "$(dirname "$0")/args"
while :; do
  echo "0, NVIDIA H100 80GB HBM3, 37, 40123, 81559, 312.45, 51, 1980"
  echo "1, NVIDIA H100 80GB HBM3, [N/A], 1, 81559, [N/A], 30, 345"
  sleep 0.1
done
"""


@pytest.fixture
def stub_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(STUB_SMI)
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def test_remote_sampler_streams_nvidia_smi(tmp_path: Path, stub_path: Path) -> None:
    run_dir = tmp_path / "run"
    sampler = RemoteGpuSampler(invoke.Context(), run_dir, interval_s=0.1).start()
    deadline = time.monotonic() + 10
    while sampler.rows < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    sampler.stop()
    assert sampler.note is None
    got = rows(run_dir)
    assert len(got) >= 6 and {r["gpu"] for r in got} == {"0", "1"}
    assert got[1]["util_pct"] == "" and got[0]["power_w"] == "312.45"
    assert "-lms 100" in (stub_path / "args").read_text()
    # stop() ended the remote process: no more rows, no pidfile left.
    count = len(rows(run_dir))
    time.sleep(0.3)
    assert len(rows(run_dir)) == count
    assert not Path(sampler._pidfile).exists()


def test_remote_sampler_without_nvidia_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # sh is found by absolute path; nvidia-smi nowhere
    sampler = RemoteGpuSampler(invoke.Context(), tmp_path / "run").start()
    time.sleep(0.2)
    sampler.stop()
    assert sampler.note and "nvidia-smi" in sampler.note and "\n" not in sampler.note
    assert not (tmp_path / "run" / "gpu.csv").exists()


def test_remote_sampler_connection_failure(tmp_path: Path) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise ConnectionRefusedError("connection refused")

    sampler = RemoteGpuSampler(SimpleNamespace(run=refuse), tmp_path).start()
    sampler.stop()
    assert sampler.note and "ConnectionRefusedError" in sampler.note

