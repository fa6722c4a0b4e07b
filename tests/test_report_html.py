"""`yapbench report`: report.html opens from disk and references valid PNGs; summary.json is written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from yapbench.cli import main as cli
from yapbench.report import build_report
from yapbench.report.synthetic import Spec, make_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def images(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html)


def test_report_references_valid_pngs(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", Spec(sessions=150, targets=("ws://a:1", "ws://b:2"), seed=4))
    summary = build_report(run)
    html = (run / "report.html").read_text()
    pngs = images(html)
    assert {"latency_cdf.png", "timeseries.png", "gpu.png", "load_latency.png", "outcomes.png", "wer.png"} <= set(pngs)
    for name in pngs:
        assert "/" not in name  # beside the HTML: the report moves as a directory
        assert (run / name).read_bytes()[:8] == PNG_SIGNATURE
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from the network
    assert "Per target" in html and "ws://b:2" in html
    assert html.index("What was run") < html.index("Latency distributions")  # headline first
    assert json.loads((run / "summary.json").read_text()) == summary
    assert "no GPU telemetry" not in html
    assert not {"turn_cdf.png", "conversation.png"} & set(pngs)  # no conversations, no conversation plots


def test_no_gpu_telemetry_is_a_note_not_a_crash(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", Spec(sessions=20, gpu=False, server_poll=False, seed=4))
    build_report(run)
    html = (run / "report.html").read_text()
    assert "no GPU telemetry:" in html
    assert "gpu.png" not in images(html)


def test_a_gpu_csv_without_rows_is_no_telemetry_either(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", Spec(sessions=20, gpu=False, server_poll=False, seed=4))
    (run / "gpu.csv").write_text("t,gpu,name,util_pct,mem_used_mib,mem_total_mib,power_w,temp_c,sm_clock_mhz\n")
    build_report(run)
    html = (run / "report.html").read_text()
    assert "no GPU telemetry:" in html and "gpu.png" not in images(html)


def test_overloaded_generator_warning(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", Spec(sessions=20, send_lag_ms=30.0, seed=4))
    build_report(run)
    assert "this run measured the generator, not the server" in (run / "report.html").read_text()


def test_empty_run_still_reports(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", Spec(sessions=0, gpu=False, server_poll=False))
    summary = build_report(run)
    assert summary["sessions"] == 0
    assert "no sessions" in (run / "report.html").read_text()


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path / "run", Spec(sessions=30, seed=4))
    assert cli(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert "first_word" in out and f"report: {run / 'report.html'}" in out
    assert cli(["report", str(tmp_path / "missing")]) == 2
    assert "no such directory" in capsys.readouterr().err
