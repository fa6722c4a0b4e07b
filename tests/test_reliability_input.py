"""Bad input: each is one clear line naming the thing, exit code 2 and no traceback; convertible audio streams fine."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr

from test_locust_runs import REPO, locust_cmd

from yapbench.audio import load_clip
from yapbench.protocol import SAMPLE_RATE
from yapbench.samples import DEFAULT_MANIFEST

SPEECH = DEFAULT_MANIFEST.parent / "real" / "en_ljspeech_LJ002-0020.wav"


def yapbench(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "yapbench.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env={**os.environ, **(env or {})})


def assert_one_clear_line(proc: subprocess.CompletedProcess, *names: str) -> str:
    """Exit 2 and a single stderr line that names the thing (locust: its single ERROR log line)."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if "/INFO/" not in ln and ln.strip()]
    assert len(lines) == 1, lines
    assert all(n in lines[0] for n in names), (lines[0], names)
    return lines[0]


def refused_port() -> int:
    """A loopback port nothing listens on (bound then released: nobody else gets it in the meantime)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- audio files -------------------------------------------------------------------------------------------------


def write_bad_audio(kind: str, path: Path) -> None:
    if kind == "corrupt":
        path.write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" + bytes(range(256)) * 8)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "no samples":
        soundfile.write(path, np.zeros(0, dtype=np.float32), 16000)
    elif kind == "too long":
        # Two hours of 8 kHz 16-bit PCM; a sparse file, so it costs no disk and only its header is ever read.
        n = 2 * 3600 * 8000 * 2
        fmt = struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
        path.write_bytes(b"RIFF" + struct.pack("<I", 36 + n) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", n))
        with open(path, "r+b") as f:
            f.truncate(44 + n)


@pytest.mark.parametrize("kind,reason", [("corrupt", "not a readable audio file ("),
                                         ("empty", "is empty (0 bytes)"),
                                         ("no samples", "contains no audio samples"),
                                         ("too long", "is 7200 s long; the limit is 3600 s")])
def test_unusable_audio_is_one_line_naming_the_file(kind, reason, tmp_path):
    path = tmp_path / "speech.wav"
    write_bad_audio(kind, path)
    line = assert_one_clear_line(yapbench("client", str(path), "--server", f"127.0.0.1:{refused_port()}"), reason)
    assert line.startswith(f"yapbench client: sample {path}: {reason}")


def convertible(kind: str, path: Path) -> tuple[int, int]:
    """Write SPEECH in another layout; returns (rate, channels) written."""
    pcm, rate = soundfile.read(SPEECH, dtype="float32")
    if kind == "stereo":
        soundfile.write(path, np.stack([pcm, 0.5 * pcm], axis=1), rate)
        return rate, 2
    if kind == "8-bit":
        soundfile.write(path, pcm, rate, subtype="PCM_U8")
        return rate, 1
    if kind == "48 kHz":
        soundfile.write(path, soxr.resample(pcm, rate, 48000), 48000)
        return 48000, 1
    raw = SPEECH.read_bytes()  # truncated: the header promises more samples than the file holds
    path.write_bytes(raw[: len(raw) // 2])
    return rate, 1


@pytest.mark.parametrize("kind", ["stereo", "8-bit", "48 kHz", "truncated"])
def test_convertible_audio_streams_fine(kind, ref_server, tmp_path):
    path = tmp_path / "speech.wav"
    rate, channels = convertible(kind, path)
    clip = load_clip(path)
    assert (clip.source_rate, clip.source_channels) == (rate, channels)
    reference = load_clip(SPEECH)
    expected_s = reference.duration_s / (2 if kind == "truncated" else 1)
    assert abs(clip.duration_s - expected_s) < 0.01 and clip.pcm.dtype == np.float32 and abs(clip.pcm).max() <= 1
    assert clip.pcm.size == round(clip.duration_s * SAMPLE_RATE)
    server = ref_server(step_ms=1)
    results = tmp_path / "client.jsonl"
    proc = yapbench("client", str(path), "--server", server.url, "--speed", "8", "--results", str(results))
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(results.read_text())
    assert record["outcome"] == "ok" and record["words"] >= 1 and record["frames_sent"] == clip.n_frames


# --- manifest, gates and hosts files ---------------------------------------------------------------------------


MANIFESTS = {
    "missing": (None, "no such file"),
    "no transcript column": ("file,text\nx.wav,hi\n", "missing column(s) transcript"),
    "not text": ("\udcff", "cannot be read"),
    "corrupt sample": ("file,transcript\nbad.wav,hello\n", "sample"),
}


@pytest.mark.parametrize("case", list(MANIFESTS))
def test_bad_manifest_stops_locust_before_the_load(case, tmp_path):
    content, reason = MANIFESTS[case]
    manifest = tmp_path / "manifest.csv"
    if content is not None:
        manifest.write_bytes(content.encode("utf-8", "surrogateescape"))
    (tmp_path / "bad.wav").write_bytes(b"not audio at all" * 10)
    run_dir = tmp_path / "run"
    cmd = locust_cmd(f"127.0.0.1:{refused_port()}", run_dir, "--manifest", str(manifest), "--samples", "*")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert_one_clear_line(proc, str(tmp_path), reason)
    assert not run_dir.exists()  # nothing started: no half-made run directory to confuse a later report


@pytest.fixture
def finished_run(tmp_path) -> Path:
    """A small run directory (the report tests' synthetic writer) for `yapbench gate`."""
    from yapbench.report.synthetic import Spec, make_run

    return make_run(tmp_path / "run", Spec(sessions=20, gpu=False, server_poll=False))


GATES = {"missing": (None, "cannot be read"), "malformed": ("[[gate]\ncondition =\n", "invalid TOML"),
         "unknown metric": ('[[gate]]\ncondition = "nosuch.p95 <= 1ms"\n', "unknown metric 'nosuch'")}


@pytest.mark.parametrize("case", list(GATES))
def test_bad_gates_file(case, tmp_path, finished_run):
    content, reason = GATES[case]
    gates = tmp_path / "gates.toml"
    if content is not None:
        gates.write_text(content)
    assert_one_clear_line(yapbench("gate", str(finished_run), "--gates", str(gates)), str(gates), reason)
    # the same file given to a load fails at the start, not after it
    cmd = locust_cmd(f"127.0.0.1:{refused_port()}", tmp_path / "run2", "--gates", str(gates))
    assert_one_clear_line(subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO),
                          str(gates), reason)


@pytest.mark.parametrize("content,reason", [(None, "no such file"), ("[[hosts]\n", "not valid TOML"),
                                            ("[[host]]\nhostname = 'x'\n", "unknown tables ['host']")])
def test_bad_hosts_file(content, reason, tmp_path):
    hosts = tmp_path / "hosts.toml"
    if content is not None:
        hosts.write_text(content)
    proc = yapbench("provision", "plan", "--hosts", str(hosts), env={"KYUTAI_API_KEY": "k"})
    assert_one_clear_line(proc, str(hosts), reason)


# --- server addresses -------------------------------------------------------------------------------------------

MALFORMED = {"http://127.0.0.1:8000": "the scheme must be ws:// or wss://", "ws://": "no host",
             "127.0.0.1:notaport": "the port must be a number"}


@pytest.mark.parametrize("url", list(MALFORMED))
@pytest.mark.parametrize("command", ["client", "warmup", "run"])
def test_malformed_url(command, url):
    flag = "--host" if command == "run" else "--server"
    args = [str(SPEECH)] if command == "client" else []
    assert_one_clear_line(yapbench(command, *args, flag, url), f"yapbench {command}: server URL", url, MALFORMED[url])


def test_malformed_url_for_locust(tmp_path):
    cmd = locust_cmd("127.0.0.1:notaport", tmp_path / "run")
    assert_one_clear_line(subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO),
                          "--host '127.0.0.1:notaport'")


@pytest.mark.parametrize("command", ["client", "run"])
def test_unreachable_server(command, tmp_path):
    port = refused_port()
    flag = "--host" if command == "run" else "--server"
    args = [str(SPEECH)] if command == "client" else ["--run-dir", str(tmp_path / "run")] if command == "run" else []
    line = assert_one_clear_line(yapbench(command, *args, flag, f"127.0.0.1:{port}"))
    reason = "connection refused (is the server running, on that port?)"
    assert line == f"yapbench {command}: server 127.0.0.1:{port}: {reason}"
    assert not (tmp_path / "run").exists()


def test_warmup_reports_a_dead_server_as_fail_exit_1():
    """warmup is the health check: a dead server is its finding (FAIL, exit 1), not a usage error."""
    port = refused_port()
    proc = yapbench("warmup", "--server", f"127.0.0.1:{port}")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stdout.startswith(f"FAIL ws://127.0.0.1:{port}/api/asr-streaming: connect_failed: connection refused")
