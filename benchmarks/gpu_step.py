"""GPU step time of a GPU engine per batch size, and the real-time limits by time and by memory.

    python benchmarks/gpu_step.py [--engine torch|moshi] [--config NAME|PATH] [--out DIR]
                                  [--batch-sizes 1,8,...] [--modes eager,graph]

Runs from the repository root without installing yapbench (needs torch, numpy, nvidia-ml-py for telemetry, and
the moshi package for --engine moshi). The model is the config's (default stt-1b-en_fr; config-stt-en-hf.toml is
the 2.6B), with random weights. For each mode (eager PyTorch; the same step captured once as a CUDA graph and
replayed) and batch size: build the engine in bf16, mark every slot active, warm up, then time whole
`Engine.step` calls (host-to-device copy of the frames, the step, the read-back of tokens: what moshi-server's
asr_model_step_duration measures) for at least `--min-steps` steps and `--min-seconds` seconds; median and p90
step time, peak GPU memory, and the mean NVML utilisation over the timed window.

The step-time model: a straight line through (batch, median step) and one through (batch, peak memory) of each
mode's successful rows. A batch keeps real time while its step takes under 80 ms (one frame per slot per step), so
the real-time limit by time is where the first line reaches 80 ms (and 60 ms, which leaves room for the server's
host side); the limit by memory is where the second reaches the card's memory. Writes DIR/gpu_step.json and
DIR/gpu.csv (NVML samples of the whole run).
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, installed or not

from yapbench.gpu import GPU_CSV, NVIDIA_SMI_QUERY, GpuSampler, parse_nvidia_smi_line  # noqa: E402
from yapbench.protocol import FRAME_SAMPLES  # noqa: E402
from yapbench.server.config import CONFIG_DIR, ServerConfig, load_config  # noqa: E402
from yapbench.server.engines import create_engine  # noqa: E402
from yapbench.server.engines.base import Engine, ModelSpec  # noqa: E402

FRAME_MS = 80.0
MARGIN_MS = 60.0  # a step under 60 ms leaves room for the host side of a real server (sockets, msgpack)
DEFAULT_BATCHES = "1,8,16,32,64,128,256,400,512,640"


@dataclass(frozen=True, slots=True)
class StepTiming:
    mode: str
    batch_size: int
    steps: int
    median_ms: float | None
    p90_ms: float | None
    peak_mem_gib: float | None
    mean_util_pct: float | None
    t_start: float
    t_end: float
    error: str | None = None

    @property
    def realtime_x(self) -> float | None:
        return None if self.median_ms is None else FRAME_MS / self.median_ms


def environment() -> dict[str, str]:
    smi = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip()
    try:
        from importlib.metadata import version

        moshi = version("moshi")
    except Exception:  # not installed: only the torch engine can run
        moshi = "absent"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "moshi": moshi,
        "gpu_memory_gib": f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.1f}",
        "cuda": str(torch.version.cuda),
        "device": torch.cuda.get_device_name(0),
        "nvidia_smi": smi,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def speech_like_frames(batch_size: int, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    # Never zeros (zeros can run faster than real data on a GPU); noise at speech level, a few distinct frames.
    return [(0.1 * rng.standard_normal((batch_size, FRAME_SAMPLES))).astype(np.float32) for _ in range(count)]


def time_steps(engine: Engine, frames: list[np.ndarray], warmup: int, min_steps: int, min_s: float) -> list[float]:
    active = np.ones(engine.spec.batch_size, dtype=bool)
    for i in range(warmup):
        engine.step(frames[i % len(frames)], active)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_steps or time.perf_counter() - start < min_s:
        t0 = time.perf_counter()
        engine.step(frames[len(times) % len(frames)], active)  # returns after the read-back: a synchronised step
        times.append((time.perf_counter() - t0) * 1000.0)
    return times


def mean_util(gpu_csv: Path, t0: float, t1: float) -> float | None:
    if not gpu_csv.exists():
        return None
    with gpu_csv.open(newline="") as f:
        utils = [float(r["util_pct"]) for r in csv.DictReader(f)
                 if r["gpu"] == "0" and r["util_pct"] and t0 <= float(r["t"]) <= t1]
    return round(statistics.fmean(utils), 1) if utils else None


def measure(mode: str, batch_size: int, args: argparse.Namespace, config: ServerConfig, gpu_csv: Path) -> StepTiming:
    gc.collect()  # the previous row's engine, if a cycle still holds it
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    t_start = time.time()
    engine: Engine | None = None
    try:
        options = {"device": "cuda", "cuda_graph": mode == "graph", "weights": "random"}
        spec = ModelSpec(batch_size, config.asr_delay_in_tokens, config.extra_heads, config.model, options=options)
        engine = create_engine(args.engine, spec)
        frames = speech_like_frames(batch_size, 8, np.random.default_rng(batch_size))
        t_window = time.time()
        times = time_steps(engine, frames, args.warmup, args.min_steps, args.min_seconds)
    except Exception as exc:  # OOM at the large sizes, a failed capture: record it and go on to the next size
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:100]}"
        return StepTiming(mode, batch_size, 0, None, None, None, None, t_start, time.time(), error)
    finally:
        if engine is not None:
            engine.close()
        del engine
        torch.cuda.synchronize()
    t_end = time.time()
    times.sort()
    return StepTiming(
        mode=mode,
        batch_size=batch_size,
        steps=len(times),
        median_ms=round(statistics.median(times), 3),
        p90_ms=round(times[int(0.9 * (len(times) - 1))], 3),
        peak_mem_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2),
        mean_util_pct=mean_util(gpu_csv, t_window, t_end),
        t_start=t_start,
        t_end=t_end,
    )


def capacity(rows: list[StepTiming], limit_ms: float) -> int:
    ok = [r.batch_size for r in rows if r.median_ms is not None and r.p90_ms is not None and r.p90_ms < limit_ms]
    return max(ok, default=0)


def line(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Least-squares (intercept, slope) through the points, or None with fewer than two distinct x."""
    if len({x for x, _ in points}) < 2:
        return None
    slope, intercept = np.polyfit([x for x, _ in points], [y for _, y in points], 1)
    return float(intercept), float(slope)


def step_model(rows: list[StepTiming], card_gib: float) -> dict[str, float | None]:
    """The straight lines of step time and memory against batch size, and where they reach 80/60 ms and the card.

    Fitted on the rows from batch 64 up: below that the step is launch-bound, not proportional to the batch."""
    ok = [r for r in rows if r.median_ms is not None and r.batch_size >= 64]
    time_fit = line([(r.batch_size, r.median_ms) for r in ok])  # type: ignore[misc]
    mem_fit = line([(r.batch_size, r.peak_mem_gib) for r in ok])  # type: ignore[misc]
    out: dict[str, float | None] = {"ms_fixed": None, "ms_per_slot": None, "gib_fixed": None, "mib_per_slot": None,
                                    "limit_80ms": None, "limit_60ms": None, "limit_memory": None}
    if time_fit:
        a, b = time_fit
        out.update(ms_fixed=round(a, 3), ms_per_slot=round(b, 5),
                   limit_80ms=round((FRAME_MS - a) / b), limit_60ms=round((MARGIN_MS - a) / b))
    if mem_fit:
        a, b = mem_fit
        out.update(gib_fixed=round(a, 2), mib_per_slot=round(b * 1024, 1), limit_memory=round((card_gib - a) / b))
    return out


def table(rows: list[StepTiming]) -> str:
    lines = ["| mode | batch | steps | median ms | p90 ms | x real time | peak GiB | GPU util % |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r.error:
            lines.append(f"| {r.mode} | {r.batch_size} | - | {r.error} | | | | |")
            continue
        lines.append(
            f"| {r.mode} | {r.batch_size} | {r.steps} | {r.median_ms:.2f} | {r.p90_ms:.2f} | {r.realtime_x:.1f} |"
            f" {r.peak_mem_gib:.1f} | {'' if r.mean_util_pct is None else r.mean_util_pct} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="torch", choices=["torch", "moshi"])
    parser.add_argument("--config", default=None, help="server config (bundled name or path); default stt-1b-en_fr")
    parser.add_argument("--out", default=os.environ.get("OUT") or "reports/gpu_step")
    parser.add_argument("--batch-sizes", default=DEFAULT_BATCHES)
    parser.add_argument("--modes", default="eager,graph")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--min-steps", type=int, default=50)
    parser.add_argument("--min-seconds", type=float, default=3.0)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_step: no CUDA device; this benchmark times the GPU step only", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = load_config(args.config if not args.config or Path(args.config).exists() else CONFIG_DIR / args.config)
    env = {**environment(), "engine": args.engine, "config": str(args.config or "config-stt-en_fr-hf.toml")}
    print(json.dumps(env, indent=1), flush=True)
    # The remote sampler's parser against this card's real nvidia-smi output.
    smi = subprocess.run(NVIDIA_SMI_QUERY.split(), capture_output=True, text=True).stdout
    print("nvidia-smi query:", smi.strip(), "->",
          [parse_nvidia_smi_line(line, time.time()) for line in smi.splitlines()])
    sampler = GpuSampler(out).start()
    print("NVML sampler:", sampler.note or "sampling", flush=True)
    rows: list[StepTiming] = []
    card_gib = torch.cuda.get_device_properties(0).total_memory / 2**30
    modes = args.modes.split(",")

    def summary() -> dict:
        return {
            mode: {
                "realtime_max_batch_80ms": capacity([r for r in rows if r.mode == mode], FRAME_MS),
                "realtime_max_batch_60ms": capacity([r for r in rows if r.mode == mode], MARGIN_MS),
                "model": step_model([r for r in rows if r.mode == mode], card_gib),
            }
            for mode in modes
        }

    try:
        for mode in modes:
            for b in (int(x) for x in args.batch_sizes.split(",")):
                rows.append(measure(mode, b, args, config, out / GPU_CSV))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
                # Written after every row: a sweep cut short by a time limit keeps what it measured.
                (out / "gpu_step.json").write_text(json.dumps(
                    {"environment": env, "rows": [asdict(r) for r in rows], "capacity": summary()}, indent=1))
    finally:
        sampler.stop()
    print(table(rows))
    print("capacity (largest tested batch with p90 step under 80 ms / 60 ms; step-time model):", json.dumps(summary()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
