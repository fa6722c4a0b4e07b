"""The web UI's STT tab in a real headless Chromium (Debian's, driven by Playwright): the table's numbers move,
the live charts draw the test's points, and the JSON behind them agrees with the run directory."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from webui_browser import chromium_page, keep_screenshot, locust_web_ui, needs_chromium, updating_screenshots

from yapbench.metricdefs import METRICS

pytestmark = [pytest.mark.browser, needs_chromium]


def sessions_in(rows: list[list[str]]) -> int:
    return sum(int(r[1]) for r in rows if r and r[0].startswith("outcome: ") and r[1].isdigit())


def test_stt_tab_renders_its_numbers_move_and_charts_draw(ref_server, tmp_path):
    server = ref_server(step_ms=1, batch_size=6)
    with locust_web_ui(server.url, "--autostart", "-u", "8", "-r", "4", "--samples", "real/en_ljspeech_LJ002-00*",
                       "--speed", "2", "--think-time", "0.1", "--run-dir", str(tmp_path / "run"), "--no-report",
                       log=tmp_path / "locust.log") as base, chromium_page() as page:
        page.goto(f"{base}/?tab=stt")
        page.get_by_role("tab", name="STT").click()
        page.wait_for_selector("text=first_word_ms", timeout=30000)

        def table() -> list[list[str]]:
            return page.eval_on_selector_all(
                "table tbody tr", "rows => rows.map(r => [...r.querySelectorAll('td')].map(c => c.innerText.trim()))")

        first = table()
        headers = page.eval_on_selector_all("table thead th", "hs => hs.map(h => h.innerText.trim())")
        assert {"Metric", "p95 (ms)", "p99 (ms)"} <= set(headers)
        assert any(r[0].startswith("word_lag_ms") for r in first)
        assert any(r[0] == "active streams" for r in first)
        deadline = time.monotonic() + 30
        later = first
        while time.monotonic() < deadline and sessions_in(later) <= sessions_in(first):
            time.sleep(1)
            later = table()
        assert sessions_in(later) > sessions_in(first) > 0

        # The charts: one line per series, drawn from the test's points (2 s apart), redrawn as points arrive.
        page.wait_for_selector('svg[data-chart="word_lag"] path[data-series="word_lag_ms_p99"][d^="M"]', timeout=20000)
        page.wait_for_selector('svg[data-chart="streams"] path[data-series="used_slots"][d*="L"]', timeout=20000)
        paths = page.eval_on_selector_all("#yapbench-charts path",
                                          "ps => ps.map(p => [p.dataset.series, p.getAttribute('d')])")
        drawn = {series for series, d in paths if d}
        assert {"first_word_ms_p95", "word_lag_ms_p50", "active_streams", "used_slots", "rejections_per_s",
                "send_lag_ms_p99"} <= drawn, paths
        deadline = time.monotonic() + 20  # a point every 2 s: wait for a third, however far the test got by now
        while len(points := json.loads(urllib.request.urlopen(f"{base}/stt/chart", timeout=5).read())["points"]) < 3:
            assert time.monotonic() < deadline, points
            time.sleep(0.5)
        assert all(b["t"] - a["t"] == pytest.approx(2.0, abs=0.6) for a, b in zip(points, points[1:]))
        # 8 users, 6 slots: the server's used slots stay at or below its 6, the rejections show up
        assert max(p["used_slots"] for p in points if p["used_slots"] is not None) <= 6
        assert any(p["rejections_per_s"] > 0 for p in points)
        assert max(p["active_streams"] for p in points) <= 8
        shot = tmp_path / "stt-tab.png"
        if updating_screenshots():
            time.sleep(60)  # the README's picture: a minute of chart points, not the few this test needs
        page.screenshot(path=str(shot), full_page=True)
        keep_screenshot(shot, "stt-tab.png")
        snap = json.loads(urllib.request.urlopen(f"{base}/stt/stats", timeout=5).read())
    # the JSON endpoint behind the tab agrees with the records
    records = (tmp_path / "run" / "sessions.jsonl").read_text().splitlines()
    assert sessions_in(later) <= snap["sessions"] <= len(records)
    # the tab's rows are the registry's live metrics, by their suffixed names (backlog needs Step messages)
    live = {m.suffixed for m in METRICS if m.live}
    assert {"first_word_ms", "word_lag_ms", "send_lag_ms"} <= set(snap["metrics"]) <= live
