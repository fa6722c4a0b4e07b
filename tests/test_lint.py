"""The code keeps its style and its types: ruff and mypy, configured in pyproject.toml, find nothing. Part of the
suite so that every full run (and `make check`) sees a finding, not only CI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=280, cwd=ROOT)


def test_ruff_finds_nothing():
    proc = run("ruff", "check", "--output-format", "concise", ".")
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]


def test_mypy_finds_nothing():
    proc = run("mypy")  # files and settings: pyproject.toml's [tool.mypy]
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
