"""What the web UI tests share: a Locust web UI process on loopback and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from processes import stop_process

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
IMAGES = REPO / "docs" / "img"
UPDATE_IMAGES_ENV = "YAPBENCH_UPDATE_SCREENSHOTS"  # =1: the tests' screenshots replace docs/img's

needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason="Debian chromium is not installed (make test installs it)")


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


@contextlib.contextmanager
def locust_web_ui(host: str, *args: str, locustfile: Path = REPO / "locustfiles" / "stt.py", log: Path,
                  env: dict | None = None) -> Iterator[str]:
    """A Locust web UI on a free loopback port; yields its base URL; its output goes to `log`."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "locust", "-f", str(locustfile), "--host", host, "--web-host", "127.0.0.1",
             "--web-port", str(port), *args],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    try:
        wait_http(f"http://127.0.0.1:{port}/")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc, 30)


@contextlib.contextmanager
def chromium_page(width: int = 1400, height: int = 1000):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def updating_screenshots() -> bool:
    return os.environ.get(UPDATE_IMAGES_ENV) == "1"


def keep_screenshot(shot: Path, name: str) -> None:
    """With YAPBENCH_UPDATE_SCREENSHOTS=1, the screenshot becomes the README's picture docs/img/NAME."""
    if updating_screenshots():
        IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, IMAGES / name)
