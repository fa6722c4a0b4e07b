"""The web UI's STT tab in a real headless Chromium (Debian's, driven by Playwright): it renders and its numbers
move."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from processes import stop_process

from yapbench.metricdefs import METRICS

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(url)


def sessions_in(rows: list[list[str]]) -> int:
    return sum(int(r[1]) for r in rows if r and r[0].startswith("outcome: ") and r[1].isdigit())


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (make test installs it)")
def test_stt_tab_renders_and_its_numbers_move(ref_server, tmp_path):
    from playwright.sync_api import sync_playwright

    server = ref_server(step_ms=1)
    port = free_port()
    locust = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(REPO / "locustfiles" / "stt.py"), "--host", server.url,
         "--web-host", "127.0.0.1", "--web-port", str(port), "--autostart", "-u", "4", "-r", "4",
         "--samples", "real/en_ljspeech_LJ002-00*", "--speed", "4", "--think-time", "0.1",
         "--run-dir", str(tmp_path / "run"), "--no-report"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        wait_http(f"http://127.0.0.1:{port}/")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
                "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/?tab=stt")
            page.get_by_role("tab", name="STT").click()
            page.wait_for_selector("text=first_word", timeout=20000)

            def table() -> list[list[str]]:
                return page.eval_on_selector_all(
                    "table tbody tr",
                    "rows => rows.map(r => [...r.querySelectorAll('td')].map(c => c.innerText.trim()))")

            first = table()
            headers = page.eval_on_selector_all("table thead th", "hs => hs.map(h => h.innerText.trim())")
            assert {"Metric", "p95 (ms)", "p99 (ms)"} <= set(headers)
            assert any(r[0] == "word_lag_ms" for r in first)
            assert any(r[0] == "active streams" for r in first)
            deadline = time.monotonic() + 20
            later = first
            while time.monotonic() < deadline and sessions_in(later) <= sessions_in(first):
                time.sleep(1)
                later = table()
            assert sessions_in(later) > sessions_in(first) > 0
            page.screenshot(path=str(tmp_path / "stt-tab.png"))
            browser.close()
        # the JSON endpoint behind the tab agrees with the records
        snap = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/stt/stats", timeout=5).read())
        assert snap["sessions"] >= sessions_in(later)
        # the tab's rows are the registry's live metrics, by their suffixed names (backlog needs Step messages)
        live = {m.suffixed for m in METRICS if m.live}
        assert {"first_word_ms", "word_lag_ms", "send_lag_ms"} <= set(snap["metrics"]) <= live
    finally:
        stop_process(locust, 15)
