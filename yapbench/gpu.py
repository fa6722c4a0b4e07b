"""GPU telemetry during a run: one row per GPU per second into RUN_DIR/gpu.csv.

Two samplers write the same file (columns `GPU_COLUMNS`, t in epoch seconds, one flush per row so a killed run
keeps what was sampled):

- `GpuSampler`: this host, through NVML (pynvml, from nvidia-ml-py). NVML calls are blocking C calls, so sampling
  runs in a real OS thread, started and paced with `_thread`'s native primitives (gevent's originals when the load
  generator has monkey-patched): a greenlet would stall the event loop for each call and be starved by a busy
  loop, and even the original `threading.Thread`/`Event` classes use the patched module's locks after patching.
- `RemoteGpuSampler`: the server's host, over an invoke/fabric connection: streams `nvidia-smi --query-gpu ...
  -lms` and parses each line. That is I/O only, so it runs fine on whatever threads the connection library uses
  (greenlets under gevent).

No NVML, no GPU, no nvidia-smi: the sampler's `note` says why in one line and nothing is written; nothing raises.
"""

from __future__ import annotations

import csv
import io
import math
import socket
import sys
import time
import _thread
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

from .runlog import GPU as GPU_CSV, GPU_COLUMNS  # the file's format is the run directory's (runlog)

NVIDIA_SMI_QUERY = (
    "nvidia-smi --query-gpu=index,name,utilization.gpu,memory.used,memory.total,power.draw,temperature.gpu,clocks.sm"
    " --format=csv,noheader,nounits"
)
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class GpuSample:
    t: float
    gpu: int
    name: str
    util_pct: float | None  # None where the driver reports "[N/A]" (some fields are unsupported on some cards)
    mem_used_mib: float | None
    mem_total_mib: float | None
    power_w: float | None
    temp_c: float | None
    sm_clock_mhz: float | None


def _native_thread_primitives() -> tuple[Callable[..., int], Callable[[], Any]]:
    """`_thread.start_new_thread` and `allocate_lock` as the OS provides them, also after gevent's patching."""
    if "gevent" in sys.modules:  # no gevent imported means nothing can have been patched
        from gevent import monkey

        return monkey.get_original("_thread", "start_new_thread"), monkey.get_original("_thread", "allocate_lock")
    return _thread.start_new_thread, _thread.allocate_lock


class _CsvSink:
    """Appends one host's samples to RUN_DIR/gpu.csv, header first; opened on the first sample so a GPU-less run
    leaves no file."""

    def __init__(self, run_dir: str | Path, host: str) -> None:
        self.path = Path(run_dir) / GPU_CSV
        self.host = host
        self.rows = 0
        self._file: TextIO | None = None
        self._writer: Any = None

    def write(self, sample: GpuSample) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.path.exists() or self.path.stat().st_size == 0
            self._file = self.path.open("a", newline="")
            self._writer = csv.writer(self._file)
            if new:
                self._writer.writerow(GPU_COLUMNS)
        row = {**asdict(sample), "host": self.host}
        self._writer.writerow(["" if row[c] is None else row[c] for c in GPU_COLUMNS])
        self._file.flush()
        self.rows += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# --- this host: NVML -----------------------------------------------------------------------------------------------


def _nvml_read(fn: Callable[[], Any]) -> Any:
    """One NVML field, or None where this GPU does not support it (NVMLError_NotSupported and friends)."""
    import pynvml

    try:
        return fn()
    except pynvml.NVMLError:
        return None


def _nvml_sample(handle: Any, index: int, name: str, t: float) -> GpuSample:
    import pynvml

    util = _nvml_read(lambda: pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    mem = _nvml_read(lambda: pynvml.nvmlDeviceGetMemoryInfo(handle))
    power_mw = _nvml_read(lambda: pynvml.nvmlDeviceGetPowerUsage(handle))
    temp = _nvml_read(lambda: pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU))
    clock = _nvml_read(lambda: pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM))
    return GpuSample(
        t=round(t, 3),
        gpu=index,
        name=name,
        util_pct=util,
        mem_used_mib=None if mem is None else round(mem.used / MIB, 1),
        mem_total_mib=None if mem is None else round(mem.total / MIB, 1),
        power_w=None if power_mw is None else round(power_mw / 1000.0, 2),
        temp_c=temp,
        sm_clock_mhz=clock,
    )


class GpuSampler:
    """Samples every local GPU through NVML each `interval_s` in a background OS thread, until `stop()`; its rows'
    host is this machine's name."""

    def __init__(self, run_dir: str | Path, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.note: str | None = None  # why nothing is sampled, when that is so
        self._sink = _CsvSink(run_dir, socket.gethostname())
        self._handles: list[tuple[int, str, Any]] = []
        self._start_thread, allocate_lock = _native_thread_primitives()
        # Two native locks, held while the thread runs: stop() releases `_stop` (the thread's wait then succeeds);
        # the thread releases `_done` as it exits (stop() waits on it).
        self._stop = allocate_lock()
        self._done = allocate_lock()
        self._running = False

    @property
    def rows(self) -> int:
        return self._sink.rows

    def start(self) -> GpuSampler:
        try:
            import pynvml

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            for i in range(count):
                handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                name = pynvml.nvmlDeviceGetName(handle)  # bytes from older nvidia-ml-py releases
                self._handles.append((i, name.decode() if isinstance(name, bytes) else name, handle))
        except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, _DriverNotLoaded, ...: all mean "no GPU"
            self.note = f"no GPU telemetry: NVML unavailable ({type(exc).__name__}: {exc})".strip()
            return self
        if not self._handles:
            self.note = "no GPU telemetry: NVML sees no GPU"
            self._shutdown_nvml()
            return self
        self._stop.acquire()
        self._done.acquire()
        self._running = True
        self._start_thread(self._loop, ())
        return self

    def _loop(self) -> None:
        try:
            next_t = time.monotonic()
            while True:
                now = time.time()
                for index, name, handle in self._handles:
                    self._sink.write(_nvml_sample(handle, index, name, now))
                # Fixed cadence, not sleep(interval) after the work: samples stay one interval apart.
                next_t += self.interval_s
                if self._stop.acquire(timeout=max(0.0, next_t - time.monotonic())):
                    return
        finally:
            self._done.release()

    def stop(self) -> None:
        if self._running:
            self._running = False
            self._stop.release()
            self._done.acquire(timeout=5 * self.interval_s + 5)
        if self._handles:
            self._shutdown_nvml()
        self._sink.close()

    @staticmethod
    def _shutdown_nvml() -> None:
        import pynvml

        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass  # already shut down: nothing left to release


# --- the server's host: nvidia-smi over a connection ---------------------------------------------------------------


def _number(field: str) -> float | None:
    """An nvidia-smi numeric field; "[N/A]", "[Not Supported]", "N/A" and blanks are None."""
    try:
        value = float(field.strip())
    except ValueError:
        return None
    return None if math.isnan(value) else value


def parse_nvidia_smi_line(line: str, t: float) -> GpuSample | None:
    """One line of NVIDIA_SMI_QUERY output as a sample, or None when it is not one (headers, errors, blanks)."""
    fields = [f.strip() for f in line.split(",")]
    if len(fields) != 8:
        return None
    index = _number(fields[0])
    if index is None:
        return None
    util, used, total, power, temp, clock = (_number(f) for f in fields[2:])
    return GpuSample(round(t, 3), int(index), fields[1], util, used, total, power, temp, clock)


class _LineStream(io.TextIOBase):
    """A write-only text stream that hands complete lines to a callback (invoke writes arbitrary chunks)."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self._on_line = on_line
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, data: str) -> int:
        lines = (self._partial + data).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._on_line(line.rstrip("\r"))
        return len(data)


class RemoteGpuSampler:
    """Streams nvidia-smi on another host through `connection` (a fabric Connection, or anything with invoke's
    `run(command, asynchronous=True, out_stream=..., ...)`, such as invoke.Context for this host) into gpu.csv.

    Rows are timestamped on arrival here; a second of pipe latency is below the sampling period.
    The remote process is stopped by its pid; if this side dies instead, nvidia-smi dies on its next write to the
    closed channel.
    """

    def __init__(self, connection: Any, run_dir: str | Path, interval_s: float = 1.0, query: str = NVIDIA_SMI_QUERY,
                 host: str | None = None) -> None:
        self.connection = connection
        self.interval_s = interval_s
        self.query = query
        self.note: str | None = None
        # The rows' host: as given (a provisioned host's name), else the connection's (fabric's Connection.host).
        self._sink = _CsvSink(run_dir, host if host is not None else str(getattr(connection, "host", "") or ""))
        self._pidfile = f"/tmp/yapbench-gpu-{uuid.uuid4().hex}.pid"
        self._errors = io.StringIO()
        self._promise: Any = None

    @property
    def rows(self) -> int:
        return self._sink.rows

    def _on_line(self, line: str) -> None:
        sample = parse_nvidia_smi_line(line, time.time())
        if sample is not None:
            self._sink.write(sample)

    def start(self) -> RemoteGpuSampler:
        ms = max(1, int(self.interval_s * 1000))
        # exec keeps the shell's pid, so the pidfile names nvidia-smi itself.
        command = f"echo $$ > {self._pidfile} && exec {self.query} -lms {ms}"
        try:
            self._promise = self.connection.run(
                command, asynchronous=True, warn=True, hide=False, pty=False, in_stream=False,
                out_stream=_LineStream(self._on_line), err_stream=self._errors,
            )
        except Exception as exc:  # connection refused, auth failure, ...: telemetry is optional, the run is not
            self.note = f"no GPU telemetry: could not start nvidia-smi on the server ({type(exc).__name__}: {exc})"
        return self

    def stop(self) -> None:
        if self._promise is None:
            return
        try:
            self.connection.run(
                f"kill $(cat {self._pidfile}) 2>/dev/null; rm -f {self._pidfile}", warn=True, hide=True, in_stream=False
            )
            result = self._promise.join()
        except Exception as exc:
            self.note = f"no GPU telemetry: nvidia-smi on the server failed ({type(exc).__name__}: {exc})"
            result = None
        finally:
            self._promise = None
            self._sink.close()
        if result is not None and self.rows == 0:
            err = self._errors.getvalue().strip().splitlines()
            reason = err[-1] if err else f"exit status {result.exited}, no samples"
            self.note = f"no GPU telemetry: nvidia-smi on the server gave nothing ({reason})"
