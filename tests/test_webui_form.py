"""The web UI's start form, driven in real Chromium as a person does: every field takes effect at each start, each
test gets its own run directory and report, and the STT tab lists this process's runs with links to the reports."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest

from yapbench.audio import load_clip
from yapbench.session import normalize_url

from webui_browser import REPO, chromium_page, keep_screenshot, locust_web_ui, needs_chromium

pytestmark = [pytest.mark.browser, needs_chromium]
KEY = "form-key"  # the servers accept only this; the Locust process's environment holds a wrong one


def fill_form(page, fields: dict[str, str], selects: dict[str, str]) -> None:
    """Open the sections a person opens, type into each field, pick each choice, press Start."""
    for section in ("Advanced options", "Custom parameters"):
        button = page.get_by_role("button", name=section)
        if button.get_attribute("aria-expanded") == "false":
            button.click()
    for name, value in fields.items():
        page.locator(f'form [name="{name}"]').fill(value)
    for name, value in selects.items():
        page.locator(f'form select[name="{name}"]').select_option(value)
    page.locator('form button[type="submit"]').click()


def runs(base: str) -> list[dict]:
    return json.loads(urllib.request.urlopen(f"{base}/stt/runs", timeout=5).read())["runs"]


def wait_finished(base: str, count: int, timeout: float = 120.0) -> list[dict]:
    """The process's runs once `count` of them have ended and their reports (and verdicts) are built."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = runs(base)
        if len(listed) >= count and all(r["exit_code"] is not None for r in listed[:count]):
            return listed
        time.sleep(0.5)
    raise AssertionError(f"test {count} did not finish: {runs(base)}")


def sessions(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "sessions.jsonl").read_text().splitlines()]


def url(server) -> str:
    return normalize_url(server.url)


def max_concurrent(ss: list[dict], until: float) -> int:
    """The most sessions open at once among those that started before `until`."""
    edges = sorted([(s["started_at"], 1) for s in ss if s["started_at"] < until] +
                   [(s["ended_at"], -1) for s in ss if s["started_at"] < until])
    open_now = peak = 0
    for _, d in edges:
        open_now += d
        peak = max(peak, open_now)
    return peak


def test_every_form_field_takes_effect_at_each_start(ref_server, tmp_path):
    a = ref_server(step_ms=1, api_key=KEY)
    b = ref_server(step_ms=1, api_key=KEY)
    # A manifest of the form's own: one sample under a new name, with its own transcript.
    (tmp_path / "mine.wav").write_bytes((REPO / "samples" / "short-noisy.wav").read_bytes())
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("file,transcript,language\nmine.wav,a transcript of the form's own,en\n")
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    gates1, gates2 = tmp_path / "pass.toml", tmp_path / "fail.toml"
    gates1.write_text('[[gate]]\ncondition = "outcomes.ok >= 1"\n')
    gates2.write_text('[[gate]]\ncondition = "first_word.max <= 0.001ms"\n'
                      '[[regression]]\nmetric = "outcomes.ok"\nmax_decrease = "100%"\n')
    run_dir = tmp_path / "run"
    with locust_web_ui("ws://127.0.0.1:9", log=tmp_path / "locust.log", env={"KYUTAI_API_KEY": "wrong"}) as base, \
            chromium_page() as page:
        page.goto(base)
        fill_form(page, {
            "userCount": "2", "spawnRate": "2", "host": a.url, "runTime": "5s",
            "samples": "mine.wav", "manifest": str(manifest), "speed": "4", "silencePrefix": "0.4",
            "thinkTime": "0.1", "runDir": str(run_dir), "gates": str(gates1), "apiKey": KEY, "apiKeyFile": "",
            "connectTimeout": "7", "readyTimeout": "6", "flushFrames": "30", "flushTimeout": "9",
        }, {"shape": "none", "targetPolicy": "round_robin", "auth": "query"})
        first = wait_finished(base, 1)[0]

        page.get_by_role("button", name="New").click()
        fill_form(page, {
            "userCount": "4", "spawnRate": "4", "host": f"{a.url},{b.url}", "runTime": "7s",
            "samples": "real/en_ljspeech_LJ002-00*", "manifest": str(REPO / "samples" / "manifest.csv"),
            "speed": "2", "silencePrefix": "0", "thinkTime": "0.1", "runDir": str(run_dir), "gates": str(gates2),
            "baseline": str(run_dir), "apiKey": "", "apiKeyFile": str(key_file),
            "connectTimeout": "10", "readyTimeout": "10", "flushFrames": "40", "flushTimeout": "15",
            "stepUsers": "2", "stepTime": "3",
        }, {"shape": "steps", "targetPolicy": "least_loaded", "auth": "header"})
        listed = wait_finished(base, 2)
        second = listed[1]

        # The STT tab lists both runs, each with a link to its report, served by Locust's web server.
        page.goto(f"{base}/?tab=stt")
        page.wait_for_selector(f'#yapbench-runs tr[data-run="{second["number"]}"] a', timeout=20000)
        links = page.eval_on_selector_all("#yapbench-runs a", "as => as.map(a => a.href)")
        assert len(links) == 2
        with page.expect_popup() as popup:
            page.click(f'#yapbench-runs tr[data-run="{second["number"]}"] a')
        report = popup.value
        report.wait_for_load_state()
        assert report.url == links[1] and "run-2" in report.content()
        report.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
        shot = tmp_path / "report.png"
        report.screenshot(path=str(shot))
        keep_screenshot(shot, "report.png")

    # One run directory per test: DIR, then DIR-2; nothing of the second test in the first one's.
    assert Path(first["dir"]) == run_dir and Path(second["dir"]) == tmp_path / "run-2"
    s1, s2 = sessions(run_dir), sessions(tmp_path / "run-2")
    meta1 = json.loads((run_dir / "run.json").read_text())
    meta2 = json.loads((tmp_path / "run-2" / "run.json").read_text())
    assert meta1["ended_at"] <= meta2["started_at"]
    assert all(s["started_at"] < meta1["ended_at"] for s in s1)
    assert all(s["started_at"] >= meta2["started_at"] for s in s2)

    # Test 1: its samples and manifest, speed, silence prefix, key (typed), host, gates (pass), settings.
    assert s1 and {s["sample"] for s in s1} == {"mine.wav"}
    assert meta1["samples"]["mine.wav"]["transcript"] == "a transcript of the form's own"
    assert {s["outcome"] for s in s1} <= {"ok", "cancelled"}  # the typed key, not $KYUTAI_API_KEY
    assert Counter(s["outcome"] for s in s1)["ok"] > 0
    assert {s["speed"] for s in s1} == {4.0} and {s["target"] for s in s1} == set(meta1["targets"]) == {url(a)}
    speech_frames = len(load_clip(REPO / "samples" / "short-noisy.wav").frames())
    assert {s["frames_planned"] for s in s1} == {speech_frames + 5}  # the 0.4 s silence prefix: 5 frames of 80 ms
    # 4x real time: the clip (prefix and speech, 6.3 s) streams in 1.6 s; at 2x or slower it alone would take 3.15 s.
    assert all(s["ended_at"] - s["started_at"] < (0.4 + speech_frames * 0.08) / 2 for s in s1)
    assert max_concurrent(s1, meta1["ended_at"]) <= 2
    assert first["exit_code"] == 0 and (run_dir / "gates.xml").exists() and (run_dir / "report.html").exists()
    assert meta1["auth"] == "query" and meta1["think_time_s"] == 0.1 and meta1["users"] == 2
    assert meta1["session_settings"] == {"connect_timeout_s": 7.0, "ready_timeout_s": 6.0, "flush_frames": 30,
                                         "flush_timeout_s": 9.0}
    assert meta1["ended_at"] - meta1["started_at"] < 5 + 20  # the run time ended it

    # Test 2: other samples, both hosts by load, steps of 2 users every 3 s, key from the file, failing gate.
    assert s2 and all(s["sample"].startswith("real/en_ljspeech_LJ002-00") for s in s2)
    assert {s["outcome"] for s in s2} <= {"ok", "cancelled"} and Counter(s["outcome"] for s in s2)["ok"] > 0
    assert {s["speed"] for s in s2} == {2.0}
    assert {s["target"] for s in s2} == set(meta2["targets"]) == {url(a), url(b)}
    server_csv = (tmp_path / "run-2" / "server.csv").read_text()
    assert a.url in server_csv and b.url in server_csv
    assert max_concurrent(s2, meta2["started_at"] + 2.5) <= 2 < max_concurrent(s2, meta2["ended_at"]) <= 4
    assert meta2["shape"] == "steps" and meta2["target_policy"] == "least_loaded" and meta2["auth"] == "header"
    assert second["exit_code"] == 1
    cases = ET.parse(tmp_path / "run-2" / "gates.xml").getroot().iter("testcase")
    regression = [c for c in cases if "outcomes.ok" in c.get("name", "")]
    assert regression and regression[0].find("skipped") is None  # the baseline field was applied
    assert not (tmp_path / "run-3").exists()


def test_a_field_yapbench_cannot_use_is_answered_in_the_form_and_starts_nothing(ref_server, tmp_path):
    server = ref_server(step_ms=1)
    with locust_web_ui(server.url, "--run-dir", str(tmp_path / "run"), log=tmp_path / "locust.log") as base:
        def start(**fields: str) -> dict:
            form = {"user_count": "1", "spawn_rate": "1", "host": server.url, **fields}
            answer = urllib.request.urlopen(f"{base}/swarm", data=urllib.parse.urlencode(form).encode(), timeout=30)
            return json.loads(answer.read())

        bad_samples = start(samples="no-such-sample-*")
        assert not bad_samples["success"] and "'no-such-sample-*' matches nothing" in bad_samples["message"]
        ramp_without_time = start(shape="ramp", run_time="")
        assert not ramp_without_time["success"] and "needs a run time" in ramp_without_time["message"]
        bad_gates = start(gates=str(tmp_path / "missing.toml"))
        assert not bad_gates["success"] and "missing.toml" in bad_gates["message"]
        assert runs(base) == [] and not (tmp_path / "run").exists()  # no test started


def test_distributed_web_ui_tests_each_get_their_samples_and_run_directory(ref_server, tmp_path):
    # Locust's master hands the form's options to its workers with each spawn: each worker rebuilds its plan from
    # them at the test's start, and the master writes each test's records into that test's own directory.
    server = ref_server(step_ms=1)
    run_dir = tmp_path / "run"
    stop_timeout = 3  # after a stop, Locust's workers wait this long before they take the next test
    with locust_web_ui(server.url, "--processes", "2", "--run-dir", str(run_dir), "--no-report", "--speed", "4",
                       "--think-time", "0.1", "--stop-timeout", str(stop_timeout), log=tmp_path / "locust.log") as base:
        refusals = []
        for number, samples in ((1, "short-noisy.wav"), (2, "real/en_ljspeech_LJ002-00*")):
            form = {"user_count": "2", "spawn_rate": "2", "host": server.url, "run_time": "5s", "samples": samples}
            deadline = time.monotonic() + 30
            while True:
                answer = json.loads(urllib.request.urlopen(
                    f"{base}/swarm", data=urllib.parse.urlencode(form).encode(), timeout=30).read())
                if answer["success"] or time.monotonic() > deadline:
                    break
                refusals.append(answer["message"])  # no worker ready: said in the form, not a silent non-start
                time.sleep(0.5)
            assert answer["success"], refusals
            wait_finished(base, number)
    assert all("no worker is ready yet" in m and f"{stop_timeout:g} s" in m for m in refusals), refusals
    s1, s2 = sessions(run_dir), sessions(tmp_path / "run-2")
    assert {s["sample"] for s in s1} == {"short-noisy.wav"} and Counter(s["outcome"] for s in s1)["ok"] > 0
    assert s2 and all(s["sample"].startswith("real/en_ljspeech_LJ002-00") for s in s2)
    assert len({s["worker"] for s in s1 + s2}) == 2  # both workers streamed
    meta2 = json.loads((tmp_path / "run-2" / "run.json").read_text())
    assert meta2["distributed"] and meta2["test_number"] == 2
    assert all(s["started_at"] >= meta2["started_at"] for s in s2)
