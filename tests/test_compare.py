"""`yapbench compare`: overlays and a table of every headline number with the difference, its bootstrap interval
and a mark where it is significant; an older run directory (fewer fields and files) still compares."""

from __future__ import annotations

import json
import shutil
import re
from pathlib import Path

import pytest

from test_gates_noise import scaled
from yapbench.cli import main as cli
from yapbench.compare import HEADLINE
from yapbench.report.synthetic import Spec, make_run


def older(src: Path, dst: Path) -> Path:
    """The run as an early yapbench wrote it: no finalize/backlog/send-lag fields or files, no sessions.bin, a
    run.json without a version."""
    shutil.copytree(src, dst)
    for name in ("sessions.bin", "send_lag.bin", "send_lag_hist.bin", "gpu.csv", "server.csv", "summary.json"):
        (dst / name).unlink(missing_ok=True)
    records = [json.loads(line) for line in (src / "sessions.jsonl").read_text().splitlines()]
    for rec in records:
        for key in ("finalize_ms", "backlog_max_ms", "send_lag_p50_ms", "send_lag_p99_ms", "send_lag_max_ms"):
            rec.pop(key, None)
    (dst / "sessions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    meta = json.loads((src / "run.json").read_text())
    meta.pop("yapbench_version", None)
    (dst / "run.json").write_text(json.dumps(meta))
    return dst


def rows(page: str) -> dict[str, str]:
    """metric -> its table row's HTML."""
    return {m.group(1): m.group(0) for m in re.finditer(r"<tr><td>([a-z0-9_.]+)</td>.*?</tr>", page)}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("cmp") / "base", Spec(sessions=300, rejected=0.0, failed=0.0, seed=21))


def test_two_runs_one_page_with_every_headline_number(base, tmp_path, capsys):
    slow = scaled(base, tmp_path / "slow", 1.5)
    noisy = make_run(tmp_path / "noisy", Spec(sessions=300, rejected=0.0, failed=0.0, seed=22))
    out = tmp_path / "out"
    assert cli(["compare", str(base), str(slow), str(noisy), "--out", str(out)]) == 0
    assert str(out / "compare.html") in capsys.readouterr().out
    page = (out / "compare.html").read_text()
    table = rows(page)
    assert set(HEADLINE) <= set(table)
    # B: first words 50% later: significant and worse; its word lags are the same records: no difference
    b_first = table["first_word.p50"].split("</td>")[3]
    assert "worse" in b_first and "✱" in b_first and "+50.0%" in b_first
    assert "✱" not in table["word_lag.p50"].split("</td>")[3]
    # C: another run of the same distribution: its first-word p50 difference is inside the interval
    assert "✱" not in table["first_word.p50"].split("</td>")[6]
    assert "95% CI of C − A" in page
    for png in ("compare_cdf.png", "compare_timeseries.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f'src="{png}"' in page


def test_an_older_run_directory_still_compares(base, tmp_path):
    old = older(base, tmp_path / "old")
    out = tmp_path / "out"
    assert cli(["compare", str(old), str(base), "--out", str(out)]) == 0
    page = (out / "compare.html").read_text()
    table = rows(page)
    assert "no data" in table["finalize.p50"].split("</td>")[1]  # the old run never recorded it
    assert "[" in table["first_word.p95"].split("</td>")[4]  # what both recorded has its interval
    assert "<td>?</td>" in page  # the old run's unknown version


def test_too_few_values_say_so_instead_of_an_interval(base, tmp_path):
    small = make_run(tmp_path / "small", Spec(sessions=40, rejected=0.0, failed=0.0, seed=23))
    out = tmp_path / "out"
    assert cli(["compare", str(base), str(small), "--out", str(out)]) == 0
    table = rows((out / "compare.html").read_text())
    assert "too few values for p99: 40, it needs &gt;= 500" in table["first_word.p99"]


def test_bad_input_is_one_line(tmp_path, capsys):
    assert cli(["compare", str(tmp_path / "nope"), str(tmp_path / "nope2"), "--out", str(tmp_path / "o")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert cli(["compare", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
