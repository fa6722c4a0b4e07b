"""`--prometheus-port`: a real Prometheus server (Debian's `prometheus`, installed by make test) scrapes a real
headless run and the reference server's /metrics; every query of the Grafana dashboard in the repository returns
data from what that Prometheus stored."""

from __future__ import annotations

import json
import shutil
import socket
import sys
import subprocess
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest

from processes import stop_process
from test_locust_runs import REPO, locust_cmd
from yapbench.promexport import LoadMetrics
from yapbench.runlog import SEND_LAG_DTYPE, WORD_DTYPE

DASHBOARD = REPO / "grafana" / "yapbench-dashboard.json"
RATE_WINDOW = "20s"  # what Grafana's $__rate_interval stands for here: a few 1 s scrapes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(prom: str, expr: str, at: float | None = None) -> list[dict]:
    params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
    with urllib.request.urlopen(f"{prom}/api/v1/query?{urllib.parse.urlencode(params)}", timeout=10) as r:
        answer = json.loads(r.read())
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


@pytest.fixture
def prometheus(tmp_path):
    """Start Prometheus on loopback with a temporary config and storage; yields (url, write_config)."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("needs Debian's prometheus package (make test installs it)")
    port = free_port()
    procs = []

    def start(jobs: dict[str, str]) -> str:
        config = tmp_path / "prometheus.yml"
        scrape = "".join(f"  - job_name: {job}\n    static_configs:\n      - targets: ['{addr}']\n"
                         for job, addr in jobs.items())
        config.write_text(f"global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n{scrape}")
        log = open(tmp_path / "prometheus.log", "w")
        procs.append(subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{url}/-/ready", timeout=1).close()
                return url
            except OSError:
                assert procs[-1].poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
                time.sleep(0.2)
        pytest.fail("Prometheus not ready after 60 s: " + (tmp_path / "prometheus.log").read_text()[-2000:])

    yield start
    for p in procs:
        p.terminate()
        p.wait(timeout=20)


def dashboard_queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t["expr"].replace("$__rate_interval", RATE_WINDOW)) for p in panels for t in p["targets"]]


def test_prometheus_scrapes_a_run_and_every_dashboard_query_returns_data(ref_server, prometheus, tmp_path):
    server = ref_server(batch_size=2, step_ms=5)  # 4 users on 2 slots: rejections too
    export_port = free_port()
    prom = prometheus({"yapbench": f"127.0.0.1:{export_port}", "moshi": f"{server.host}:{server.port}"})
    cmd = locust_cmd(server.url, tmp_path / "run", "--prometheus-port", str(export_port), users=4, run_time="12s")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The moment of the exporter's last sample (the series go stale once the run has quit): evaluate there.
    last = query(prom, "yapbench_users[5m]", time.time())
    assert last, "Prometheus never scraped the exporter"
    at = float(last[0]["values"][-1][0])
    sessions = {r["metric"]["outcome"]: float(r["value"][1]) for r in query(prom, "yapbench_sessions_total", at)}
    recorded = [json.loads(line)["outcome"] for line in (tmp_path / "run" / "sessions.jsonl").read_text().splitlines()]
    assert sessions.get("ok", 0) > 0 and sessions.get("rejected", 0) > 0, sessions
    assert sum(sessions.values()) <= len(recorded)  # Prometheus saw a prefix of what the run directory holds
    for title, expr in dashboard_queries():
        result = query(prom, expr, at)
        assert result, f"panel {title!r}: no data for {expr}"
        values = [float(r["value"][1]) for r in result]
        assert any(v == v for v in values), f"panel {title!r}: only NaN for {expr}"  # NaN != NaN


def test_bulk_histograms_match_prometheus_bucket_semantics():
    """`le` is inclusive; counts are cumulative; the overload gauge follows the p99 of the last 30 s."""
    from prometheus_client.exposition import generate_latest
    from prometheus_client.registry import CollectorRegistry

    now = [1000.0]
    metrics = LoadMetrics(lambda: 3, lambda: 4, clock=lambda: now[0])

    def lag(ms: list[float]) -> bytes:
        return np.array([(now[0], v) for v in ms], dtype=SEND_LAG_DTYPE).tobytes()

    ok = {"outcome": "ok", "target": "ws://a", "first_word_ms": 100.0, "finalize_ms": 50.0}
    rejected = {"outcome": "rejected", "target": "ws://a", "first_word_ms": None}
    word_records = np.zeros(3, dtype=WORD_DTYPE)
    word_records["lag_ms"] = (50.0, 100.0, 400.0)
    words = word_records.tobytes()
    metrics.add([(ok, words, lag([30.0] * 5 + [1.0] * 95)), (rejected, [], b"")])
    registry = CollectorRegistry(auto_describe=False)
    registry.register(metrics)
    text = generate_latest(registry).decode()
    assert 'yapbench_sessions_total{outcome="ok",target="ws://a"} 1.0' in text
    assert 'yapbench_rejections_total{target="ws://a"} 1.0' in text
    assert 'yapbench_word_lag_seconds_bucket{le="0.05",target="ws://a"} 1.0' in text  # 50 ms is <= 0.05
    assert 'yapbench_word_lag_seconds_bucket{le="0.1",target="ws://a"} 2.0' in text
    assert 'yapbench_word_lag_seconds_bucket{le="+Inf",target="ws://a"} 3.0' in text
    assert 'yapbench_first_word_seconds_count{target="ws://a"} 1.0' in text  # the rejected session has none
    assert "yapbench_active_streams 3.0" in text and "yapbench_users 4.0" in text
    assert "yapbench_generator_overloaded 1.0" in text  # p99 of 100 lags, 5 of them at 30 ms
    now[0] += 31  # the slow frame leaves the window
    metrics.add([(ok, [], lag([1.0] * 10))])
    assert "yapbench_generator_overloaded 0.0" in generate_latest(registry).decode()


def test_a_taken_port_is_one_clear_line_and_exit_2(ref_server, tmp_path):
    server = ref_server(step_ms=1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(locust_cmd(server.url, tmp_path / "run", "--prometheus-port", str(port), users=1,
                                         run_time="2s"), capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"--prometheus-port {port}: cannot listen" in proc.stderr and "Traceback" not in proc.stderr


def test_the_web_ui_mode_exports_too(ref_server, tmp_path):
    """Locust with its web UI (autostarted, as a user would press Start) exports as the headless run does."""
    import os

    server = ref_server(step_ms=1)
    web, export = free_port(), free_port()
    locust = subprocess.Popen(
        [sys.executable, "-m", "locust", "-f", str(REPO / "locustfiles" / "stt.py"), "--host", server.url,
         "--web-host", "127.0.0.1", "--web-port", str(web), "--autostart", "-u", "2", "-r", "2",
         "--samples", "real/en_ljspeech_LJ002-00*", "--speed", "4", "--think-time", "0.1",
         "--run-dir", str(tmp_path / "run"), "--no-report", "--prometheus-port", str(export)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline, ok = time.monotonic() + 60, 0.0
        while time.monotonic() < deadline and ok < 2:
            time.sleep(0.5)
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{export}/metrics", timeout=2).read().decode()
            except OSError:
                assert locust.poll() is None, "locust exited"
                continue
            ok = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                     if line.startswith('yapbench_sessions_total{outcome="ok"'))
        assert ok >= 2, "no sessions exported within 60 s"
        lines = (tmp_path / "run" / "sessions.jsonl").read_text().splitlines()
        written = [json.loads(line)["outcome"] for line in lines]
        assert written.count("ok") >= ok  # a session is exported once the run directory holds it
        assert "yapbench_active_streams" in text and "yapbench_word_lag_seconds_bucket" in text
    finally:
        stop_process(locust, 15)
