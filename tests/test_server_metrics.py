"""Server telemetry: /metrics scraped into server_metrics.csv during real loads, over HTTP and over SSH, and the
report's server plot or its one-line note. The metrics text is the reference server's (moshi-server's names)."""

from __future__ import annotations

import csv
import http.server
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from test_locust_runs import REPO, run_locust
from yapbench.report import build_report
from yapbench.report.synthetic import Spec, make_run
from yapbench.server.prom import AsrMetrics
from yapbench.servermetrics import COLUMNS, SERVER_METRICS_CSV, MetricsScraper, interval_row, parse_scrape

pytest_plugins = ["provision_sshd"]


def rows(run_dir: Path) -> list[dict]:
    with open(run_dir / SERVER_METRICS_CSV) as f:
        return list(csv.DictReader(f))


def test_interval_percentiles_come_from_the_histograms_deltas():
    m = AsrMetrics()
    for _ in range(500):
        m.step_duration.observe(0.015)  # before the interval: must not count
    first = parse_scrape(m.render())
    m.connect += 7
    m.open_channels = 5
    for _ in range(98):
        m.step_duration.observe(0.025)  # bucket (0.02, 0.03]
    m.step_duration.observe(0.065)
    m.step_duration.observe(0.5)  # over the 80 ms frame: the +Inf bucket
    for n in (10, 30):
        m.num_steps.observe(n)
    row = dict(zip(COLUMNS[2:], interval_row(parse_scrape(m.render()), first)))
    assert row["open_channels"] == 5 and row["connects"] == 7 and row["steps"] == 100
    # histogram_quantile: rank 50 of 98 inside (20, 30] ms -> 20 + 10 * 50/98
    assert row["step_p50_ms"] == pytest.approx(20 + 10 * 50 / 98, abs=1e-3)
    assert row["step_p99_ms"] == pytest.approx(70.0)  # rank 99 is the 0.065 s step: bucket (60, 70], its top
    assert row["step_mean_ms"] == pytest.approx((98 * 25 + 65 + 500) / 100, abs=1e-3)
    assert row["slow_steps"] == 1
    assert row["closed"] == 2 and row["closed_mean_steps"] == 20


def test_a_server_restart_starts_a_new_origin_instead_of_negative_counts():
    before = AsrMetrics()
    for _ in range(1000):
        before.step_duration.observe(0.01)
    before.connect = 50
    after = AsrMetrics()  # restarted: counters from zero
    for _ in range(10):
        after.step_duration.observe(0.045)
    after.connect = 2
    row = dict(zip(COLUMNS[2:], interval_row(parse_scrape(after.render()), parse_scrape(before.render()))))
    assert row["steps"] == 10 and row["connects"] == 2
    assert 40 <= row["step_p50_ms"] <= 50


def test_a_headless_run_scrapes_the_servers_metrics_and_the_report_plots_them(ref_server, tmp_path):
    server = ref_server(batch_size=4, step_ms=20)
    run_dir = tmp_path / "run"
    proc = run_locust(server, run_dir, users=3, run_time="8s")
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = rows(run_dir)
    assert len(got) >= 3, got  # once a second over ~8 s (the first scrape only sets the origin)
    assert {r["target"] for r in got} == {server.url + "/api/asr-streaming"}
    t = [float(r["t"]) for r in got]
    assert all(0.5 < b - a < 2.0 for a, b in zip(t, t[1:])), t
    assert sum(float(r["steps"]) for r in got) > 50  # 20 ms steps while streams are open
    busy = [r for r in got if r["steps"] and float(r["steps"]) > 0]
    # 20 ms of simulated GPU time per step: every step lands in the server's (20, 30] ms bucket or just above
    assert all(20 <= float(r["step_p50_ms"]) <= 40 for r in busy), busy
    assert max(float(r["open_channels"]) for r in got) <= 4
    assert max(float(r["open_channels"]) for r in got) >= 1
    build_report(run_dir)
    assert (run_dir / "server.png").stat().st_size > 10_000
    html = (run_dir / "report.html").read_text()
    assert 'src="server.png"' in html and "no server metrics" not in html


class _NoMetrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        self.send_error(404)

    def log_message(self, *args) -> None:
        pass


def test_a_target_without_metrics_gives_no_file_a_reason_and_one_report_line(tmp_path):
    import gevent  # used unpatched: spawn and sleep only, never locust

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NoMetrics)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        target = f"ws://127.0.0.1:{httpd.server_port}/api/asr-streaming"
        scraper = MetricsScraper([target], tmp_path, interval_s=0.2)
        scraper.start()
        gevent.sleep(1.0)
        scraper.stop()
    finally:
        httpd.shutdown()
    assert not (tmp_path / SERVER_METRICS_CSV).exists()
    assert "HTTP 404" in scraper.silent()[target]
    # and a run whose targets never answered /metrics still reports, with one line saying so
    run_dir = make_run(tmp_path / "run", Spec(sessions=30))
    assert not (run_dir / SERVER_METRICS_CSV).exists()
    build_report(run_dir)
    html = (run_dir / "report.html").read_text()
    assert html.count("no server metrics: server_metrics.csv is absent or empty") == 1
    assert not (run_dir / "server.png").exists()


SSH_SCRAPE = """
import argparse, json, sys
import gevent
from yapbench.locust.provisioned import remote_metrics_fetchers
from yapbench.servermetrics import MetricsScraper
inventory, known_hosts, target, run_dir = sys.argv[1:]
opts = argparse.Namespace(provision=inventory, known_hosts=known_hosts, accept_new_host_keys=False)
fetchers, executors = remote_metrics_fetchers(opts, [target])
scraper = MetricsScraper([target], run_dir, interval_s=0.3, fetchers=fetchers)
scraper.start()
gevent.sleep(2.0)
scraper.stop()
for e in executors:
    e.close()
print(json.dumps({"rows": scraper.rows, "silent": scraper.silent(), "over_ssh": sorted(fetchers)}))
"""


@pytest.mark.sshd
def test_provisioned_targets_are_scraped_through_ssh(sshd, ref_server, tmp_path):
    """The target's name does not resolve from the generator (a firewalled GPU host): only the SSH channel reaches
    the server's port, as --provision's telemetry does."""
    import json

    pytest.importorskip("fabric")
    server = ref_server(step_ms=5)
    inventory = tmp_path / "hosts.toml"
    inventory.write_text(f'[[hosts]]\naddress = "root@127.0.0.1:{sshd.port}"\nkey_file = "{sshd.key_file}"\n'
                         f'port = {server.port}\naddr = "127.0.0.1"\nws_host = "gpu.invalid"\n')
    target = f"ws://gpu.invalid:{server.port}/api/asr-streaming"
    proc = subprocess.run([sys.executable, "-c", SSH_SCRAPE, str(inventory), sshd.known_hosts, target, str(tmp_path)],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["over_ssh"] == [target] and out["silent"] == {}, out
    got = rows(tmp_path)
    assert len(got) >= 3 and {r["target"] for r in got} == {target}
    assert all(float(r["open_channels"]) == 0 for r in got)  # nothing streams: the gauge, read over SSH
