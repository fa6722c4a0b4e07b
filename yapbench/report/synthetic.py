"""A synthetic run directory written through the real writer (RunLog, SessionResult), for tests and the report
benchmark: realistic shapes (ramped concurrency, rejections, partial failures, recognition errors) from a seed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..metrics import NOT_SERVED, Outcome, SessionResult, WordTiming
from ..runlog import GPU, GPU_COLUMNS, SERVER, SERVER_COLUMNS, RunLog, rows_of

FRAME_S = 0.08
SAMPLES = {
    "jfk.flac": "And so, my fellow Americans, ask not what your country can do for you, ask what you can do for "
                "your country.",
    "quilter.wav": "MISTER QUILTER IS THE APOSTLE OF THE MIDDLE CLASSES AND WE ARE GLAD TO WELCOME HIS GOSPEL",
    "reader.flac": "If the reader will excuse me, I will say nothing of my antecedents, nor of the circumstances "
                   "which led me to leave my native country; the narrative would be tedious to him and painful "
                   "to myself.",
}


@dataclass
class Spec:
    sessions: int = 200
    duration_s: float = 60.0
    targets: tuple[str, ...] = ("ws://127.0.0.1:8080",)
    samples: dict[str, str] = field(default_factory=lambda: dict(SAMPLES))
    rejected: float = 0.05  # fraction of sessions rejected
    failed: float = 0.02  # fraction ending in disconnected / no_ready / connect_failed / cancelled
    word_error: float = 0.05  # chance a word is substituted
    send_lag_ms: float = 1.0  # scale of the generator's send lag
    ramp_s: float = 0.0  # > 0: run.json records the last user starting then, and the load stopping at 80 %
    ramp_send_lag_ms: float = 1.0  # scale of the send lag of frames sent during the ramp
    gpu: bool = True
    server_poll: bool = True
    seed: int = 1


def make_run(run_dir: str | Path, spec: Spec | None = None) -> Path:
    spec = spec or Spec()
    rng = np.random.default_rng(spec.seed)
    d = Path(run_dir)
    log = RunLog(d)
    t0 = 1_700_000_000.0
    log.write_meta({
        "targets": list(spec.targets), "target": spec.targets[0],
        "samples": {n: {"transcript": t, "language": "en", "duration_s": 0.45 * len(t.split())}
                    for n, t in spec.samples.items()},
        "users": 50, "spawn_rate": 5, "speed": 1.0, "shape": "", "started_at": t0,
        "ended_at": t0 + spec.duration_s, "command": "synthetic", "yapbench_version": "test",
        **({"spawning_complete_at": t0 + spec.ramp_s, "stopping_at": t0 + 0.8 * spec.duration_s} if spec.ramp_s
           else {}),
    })
    names = list(spec.samples)
    batch = []
    for i in range(spec.sessions):
        batch.append(rows_of(_session(rng, spec, i, t0, names)))
        if len(batch) == 500:
            log.append(batch)
            batch = []
    log.append(batch)
    log.close()
    if spec.gpu:
        _gpu_csv(d / GPU, rng, t0, spec.duration_s)
    if spec.server_poll:
        _server_csv(d / SERVER, spec.targets, t0, spec.duration_s)
    return d


def _session(rng: np.random.Generator, spec: Spec, i: int, t0: float, names: list[str]) -> SessionResult:
    sample = names[i % len(names)]
    ref = spec.samples[sample].split()
    r = rng.random()
    outcome = (Outcome.REJECTED if r < spec.rejected else
               (Outcome.DISCONNECTED, Outcome.NO_READY, Outcome.CONNECT_FAILED, Outcome.CANCELLED)[i % 4]
               if r < spec.rejected + spec.failed else Outcome.OK)
    started = t0 + rng.random() * spec.duration_s * 0.8
    res = SessionResult(session_id=f"s{i:07d}", target=spec.targets[i % len(spec.targets)], sample=sample,
                        speed=1.0, started_at=started, outcome=outcome, worker="w0")
    res.connect_ms = float(rng.gamma(2.0, 1.5))
    if outcome in NOT_SERVED:
        res.ended_at = started + 0.01
        res.error = "no free channels" if outcome == Outcome.REJECTED else "refused"
        return res
    res.ready_ms = float(rng.gamma(2.0, 10.0))
    if outcome == Outcome.NO_READY:
        res.ended_at = started + 10.0
        return res
    audio_s = 0.45 * len(ref)
    frames = int(audio_s / FRAME_S)
    t_first = started + (res.connect_ms + res.ready_ms) / 1000.0
    res.send_times = t_first + np.arange(frames) * FRAME_S
    scale = np.where(res.send_times < t0 + spec.ramp_s, spec.ramp_send_lag_ms, spec.send_lag_ms)
    res.send_lag_ms = (rng.exponential(1.0, frames) * scale).astype(np.float32)
    res.first_response_ms = float(80 + rng.gamma(2.0, 5.0))
    res.backlog_max_ms = float(80 + rng.gamma(2.0, 20.0))
    lag = float(400 + rng.gamma(3.0, 30.0))
    for k, word in enumerate(ref):
        text = "Uh" if rng.random() < spec.word_error else word
        start = k * 0.45
        w_lag = lag + float(rng.normal(0, 20))
        res.words.append(WordTiming(text=text, start_time=start, recv_ms=start * 1000 + w_lag, lag_ms=w_lag,
                                    stop_time=start + 0.4, end_lag_ms=w_lag + 30.0))
    res.first_word_ms = res.words[0].recv_ms
    res.audio_s, res.frames_planned, res.frames_sent, res.steps = audio_s, frames, frames, frames
    if outcome in (Outcome.DISCONNECTED, Outcome.CANCELLED):  # cut half-way: fewer frames, fewer words, no flush
        res.words = res.words[: len(ref) // 2]
        res.frames_sent = frames // 2
    else:
        res.finalize_ms = float(300 + rng.gamma(2.0, 20.0))
    res.ended_at = t_first + audio_s + 0.5
    return res


def _gpu_csv(path: Path, rng: np.random.Generator, t0: float, duration_s: float) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(",".join(GPU_COLUMNS) + "\n")
        for s in range(int(duration_s)):
            f.write(f"{t0 + s},gpu-host,0,NVIDIA H100,{rng.uniform(40, 95):.0f},{30000 + 10 * s},81559,"
                    f"{rng.uniform(200, 600):.1f},60,1980\n")


def _server_csv(path: Path, targets: tuple[str, ...], t0: float, duration_s: float) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(",".join(SERVER_COLUMNS) + "\n")
        for s in range(0, int(duration_s), 2):
            for tgt in targets:
                f.write(f"{t0 + s},{tgt},{min(s, 32)},64\n")
