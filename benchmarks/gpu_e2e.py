"""End-to-end on GPU hosts: reference server(s) with the torch engine (real 1B architecture, random weights), yapbench
load on the same machine, NVML telemetry, the report. Run from the repository root on the device machine.

    python benchmarks/gpu_e2e.py single --batch-sizes 64,256,512 --duration 40 --out OUTDIR
    python benchmarks/gpu_e2e.py fleet --gpus 2 --batch-size 256 --users 400 --duration 40 --out OUTDIR
    python benchmarks/gpu_e2e.py capacity --gpus 2 --batch-size 256 --out OUTDIR
    python benchmarks/gpu_e2e.py capacity --gpus 1 --engine moshi --batch-size-from STEP_DIR/gpu_step.json --out OUTDIR

`single`: one server on GPU 0 per batch size, as many streams as slots. `fleet`: one server per GPU (ports P, P+1,
CUDA_VISIBLE_DEVICES=i), streams spread least-loaded; the report breaks metrics down per target and per GPU.
`capacity`: `yapbench capacity` on that fleet: the total and each GPU's answer. With --batch-size-from, the batch
size is the step-time model's real-time limit from a gpu_step.py result (graph mode: the largest batch whose step
stays under 60 ms by the fitted line, leaving room for the host side, and that the card's memory holds), the
search brackets it (from 3/4 of it up to 1.1 times it, resolution 2 %), and capacity.json records the prediction
it is checked against: a fixed-batch server holds exactly its batch size while its step stays under 80 ms.
Prints one table row per run and leaves each run directory (report.html, PNGs, summary.json, gpu.csv) under OUTDIR.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from yapbench.server.launch import start_server  # noqa: E402


def step_ms(http_url: str) -> float | None:
    """Mean model step time from the server's Prometheus histogram (sum / count)."""
    text = urllib.request.urlopen(f"{http_url}/metrics", timeout=5).read().decode()
    total = re.search(r"^asr_model_step_duration_sum\S* ([\d.e+-]+)", text, re.M)
    count = re.search(r"^asr_model_step_duration_count\S* ([\d.e+-]+)", text, re.M)
    if not total or not count or float(count.group(1)) == 0:
        return None
    return 1000.0 * float(total.group(1)) / float(count.group(1))


def start_on_gpu(gpu: int, batch_size: int, engine: str, config: str | None = None):
    os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
    try:
        options = {"config": config} if config else {}
        return start_server(engine=engine, batch_size=batch_size, timeout=300.0, log="warning", **options)
    finally:
        del os.environ["CUDA_VISIBLE_DEVICES"]


def predicted_batch(step_json: Path) -> int:
    """The step-time model's real-time batch size (see the module docstring), a multiple of 16."""
    model = json.loads(step_json.read_text())["capacity"]["graph"]["model"]
    limits = [x for x in (model["limit_60ms"], model["limit_memory"]) if x]
    measured = [r["batch_size"] for r in json.loads(step_json.read_text())["rows"]
                if r["mode"] == "graph" and r["median_ms"] is not None]
    # Never beyond the largest batch that was built and timed: the memory line is an extrapolation.
    return int(min(*limits, max(measured))) // 16 * 16


def load(hosts: list[str], users: int, duration: int, processes: int, run_dir: Path, policy: str) -> int:
    cmd = [sys.executable, "-m", "locust", "-f", str(REPO / "locustfiles" / "stt.py"), "--headless", "--only-summary",
           "-u", str(users), "-r", str(max(20, users // 4)), "-t", f"{duration}s", "--host", ",".join(hosts),
           "--run-dir", str(run_dir), "--think-time", "0.25", "--target-policy", policy,
           "--samples", "mid.wav,real/en_jfk_inaugural_1961.flac,real/en_librispeech_2412-153948-0000.flac,"
                        "synthetic/en_espeak_mid.wav"]
    if processes:
        cmd += ["--processes", str(processes)]
    return subprocess.call(cmd, cwd=REPO, stdout=subprocess.DEVNULL)


def row(label: str, run_dir: Path, steps: list[float | None]) -> dict:
    s = json.loads((run_dir / "summary.json").read_text())
    g = s.get("gpu", {})
    out = {
        "run": label,
        "sessions": s["sessions"],
        "ok": s["outcomes"]["ok"],
        "rejected": s["outcomes"]["rejected"],
        "errors": round(s["error_rate"], 4),
        "first_word_p95_ms": s["first_word"].get("p95"),
        "word_lag_p95_ms": s["word_lag"].get("p95"),
        "backlog_p99_ms": s["backlog_max"].get("p99"),
        "send_lag_p99_ms": s["send_lag"].get("p99"),
        "gpu_util_mean_pct": g.get("util_pct", {}).get("mean"),
        "gpu_mem_max_mib": g.get("mem_used_mib", {}).get("max"),
        "step_ms_mean": [None if x is None else round(x, 2) for x in steps],
        "audio_s_per_s": s["throughput"]["audio_s_per_s"],
    }
    print(json.dumps(out), flush=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["single", "fleet", "capacity"])
    p.add_argument("--batch-sizes", default="64,256,512")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--gpus", type=int, default=2)
    p.add_argument("--users", type=int, default=0)
    p.add_argument("--duration", type=int, default=40)
    p.add_argument("--processes", type=int, default=4)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--engine", default="torch",
                   help="torch or moshi on the GPU host; synthetic to try the script anywhere")
    p.add_argument("--config", default=None, help="server config (bundled name or path)")
    p.add_argument("--batch-size-from", type=Path, default=None, help="capacity: gpu_step.json to size the batch from")
    p.add_argument("--bracket", action="store_true",
                   help="capacity: search around the batch size (as --batch-size-from does) and record the prediction")
    a = p.parse_args()
    rows = []
    if a.mode == "single":
        for b in (int(x) for x in a.batch_sizes.split(",")):
            t0 = time.time()
            with start_on_gpu(0, b, a.engine) as server:
                print(f"batch {b}: server ready in {time.time() - t0:.0f} s", flush=True)
                run_dir = a.out / f"single-b{b}"
                load([server.url], a.users or b, a.duration, a.processes, run_dir, "round_robin")
                rows.append(row(f"single b={b} u={a.users or b}", run_dir, [step_ms(server.http_url)]))
    elif a.mode == "capacity":
        batch = predicted_batch(a.batch_size_from) if a.batch_size_from else a.batch_size
        total = a.gpus * batch
        search = ["--start", "64", "--resolution", "16", "--settle", "5"]
        bracket = a.bracket or a.batch_size_from is not None
        if bracket:  # settle past the spawn of the first level (50 users/s)
            search = ["--start", str(total * 3 // 4), "--max-users", str(total * 11 // 10),
                      "--resolution", str(max(2, total // 50)), "--settle", "10"]
        t0 = time.time()
        servers = [start_on_gpu(i, batch, a.engine, a.config) for i in range(a.gpus)]
        print(f"{a.gpus} x batch {batch}: servers ready in {time.time() - t0:.0f} s", flush=True)
        try:
            run_dir = a.out / f"capacity-{a.gpus}x{batch}"
            subprocess.call([sys.executable, "-m", "yapbench.cli", "capacity",
                             "--host", ",".join(s.url for s in servers),
                             "--run-dir", str(run_dir), "--processes", str(a.processes), *search,
                             "--window", "5", "--stable-windows", "2",
                             "--max-windows", "3", "--target-policy", "least_loaded",
                             "--slo", "first_word.p95<=2000ms", "--slo", "backlog.p99<=320ms",
                             "--samples", "mid.wav,real/en_jfk_inaugural_1961.flac"], cwd=REPO)
            result = json.loads((run_dir / "capacity.json").read_text())
            if bracket:
                result["prediction"] = {"batch_size": batch, "streams": total, "engine": a.engine,
                                        "step_ms": [step_ms(s.http_url) for s in servers]}
            (run_dir / "capacity.json").write_text(json.dumps(result, indent=1))
            rows.append(result)
        finally:
            for s in servers:
                s.stop()
    else:
        servers = [start_on_gpu(i, a.batch_size, a.engine) for i in range(a.gpus)]
        try:
            run_dir = a.out / f"fleet-{a.gpus}x{a.batch_size}"
            users = a.users or a.gpus * a.batch_size
            load([s.url for s in servers], users, a.duration, a.processes, run_dir, "least_loaded")
            rows.append(row(f"fleet {a.gpus} GPUs b={a.batch_size} u={users}", run_dir,
                            [step_ms(s.http_url) for s in servers]))
            per_target = json.loads((run_dir / "summary.json").read_text()).get("targets", {})
            for url, t in per_target.items():
                print(json.dumps({"target": url, "sessions": t["sessions"], "ok": t["outcomes"]["ok"],
                                  "first_word_p95_ms": t["first_word"].get("p95"),
                                  "backlog_p99_ms": t["backlog_max"].get("p99")}), flush=True)
        finally:
            for s in servers:
                s.stop()
    (a.out / f"{a.mode}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
