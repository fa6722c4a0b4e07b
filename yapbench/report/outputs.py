"""What the report writes into a run directory: summary.json (replaced atomically) and report.html."""

from __future__ import annotations

import json
import os
from pathlib import Path

SUMMARY = "summary.json"
REPORT = "report.html"


def write_summary(run_dir: str | Path, summary: dict) -> Path:
    """summary.json, replaced atomically (a gate reading it never sees half a file)."""
    path = Path(run_dir) / SUMMARY
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
