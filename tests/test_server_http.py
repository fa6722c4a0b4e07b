"""Reference server, docs/protocol.md §1, §1b, §4, §7: routes, authentication, capacity rejection, offline POST,
metrics."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from yapbench.protocol import Error, Ready

ROOT = Path(__file__).resolve().parent.parent
MID = ROOT / "samples" / "mid.wav"


@pytest.fixture(scope="module")
def server():
    from yapbench.server.launch import start_server

    with start_server(batch_size=2, step_ms=0, offline_tries=3) as s:
        yield s


def test_build_info_has_the_real_fields(server, get):
    status, body = get(server, "/api/build_info")
    info = json.loads(body)
    assert status == 200
    for key in ("build_timestamp", "build_date", "git_branch", "git_timestamp", "git_date", "git_hash",
                "git_describe", "rustc_host_triple", "rustc_version", "cargo_target_triple"):
        assert isinstance(info[key], str)


def test_modules_info_reports_slots_as_strings(server, get, raw_ws):
    ws = raw_ws(server)
    assert ws.recv() == Ready()
    status, body = get(server, "/api/modules_info")
    (module,) = json.loads(body)
    assert status == 200
    assert module["type"] == "batched_asr" and module["path"] == "/api/asr-streaming"
    assert module["lm"].startswith("hf://") and module["audio_tokenizer"].startswith("hf://")
    assert module["total_slots"] == "2" and module["used_slots"] == "1"


def test_unknown_path_is_404_and_plain_get_on_the_ws_route_is_4xx(server, get):
    assert get(server, "/nope")[0] == 404
    status, _ = get(server, "/api/asr-streaming")
    assert 400 <= status < 500


def test_metrics_expose_the_four_asr_metrics(server, get, raw_ws):
    ws = raw_ws(server)
    assert ws.recv() == Ready()
    ws.send_frames(2)
    ws.recv(), ws.recv()
    text = get(server, "/metrics")[1].decode()
    assert re.search(r'^asr_connect\{handler="all"\} \d+', text, re.M)
    assert re.search(r'^asr_open_channels\{handler="all"\} 1', text, re.M)
    for le in ("0.02", "0.03", "0.04", "0.05", "0.06", "0.07", "0.08", "+Inf"):
        assert f'asr_model_step_duration_bucket{{le="{le}"}}' in text
    for le in ("2", "25", "125", "250", "500", "750", "1125", "1500", "2250", "3000", "4500"):
        assert f'asr_connection_num_steps_bucket{{le="{le}"}}' in text
    assert "# TYPE asr_model_step_duration histogram" in text


@pytest.mark.parametrize(("key", "query", "status"), [
    ("public_token", "", 101),
    (None, "?auth_id=public_token", 101),
    ("wrong", "?auth_id=public_token", 401),  # the header decides when present, even when wrong
    ("public_token", "?auth_id=wrong", 101),
    (None, "", 401),
    (None, "?auth_id=", 401),
])
def test_auth_header_then_query(server, raw_ws, key, query, status):
    ws = raw_ws(server, key=key, query=query)
    assert ws.status == status
    if status == 401:
        assert re.search(rb"content-length: 0", ws.head, re.I)  # empty body, and no upgrade
    else:
        assert ws.recv() == Ready()


def test_full_server_upgrades_then_errors_and_closes_without_status(ref_server, raw_ws, get):
    s = ref_server(batch_size=1, step_ms=0)
    holder = raw_ws(s)
    assert holder.recv() == Ready()
    rejected = raw_ws(s)
    assert rejected.status == 101
    assert rejected.recv() == Error("no free channels")
    close = rejected.recv()
    assert close[0] == "close" and close[2] == b""  # a Close frame with no status code (1005 for clients)
    assert rejected.recv() == ("eof",)
    text = get(s, "/metrics")[1].decode()
    assert 'asr_connect{handler="all"} 3' in text  # readiness probe, holder, rejected
    assert 'asr_open_channels{handler="all"} 1' in text


def _post(server, body: bytes, key: str | None = "public_token", query: str = "") -> tuple[int, bytes]:
    request = urllib.request.Request(server.http_url + "/api/asr-streaming" + query, data=body, method="POST")
    if key is not None:
        request.add_header("kyutai-api-key", key)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_offline_post_transcribes_a_whole_file(server):
    status, body = _post(server, MID.read_bytes())
    items = json.loads(body)
    assert status == 200
    words = [i["text"] for i in items if i["type"] == "Word"]
    assert words[:4] == ["IF", "THE", "READER", "WILL"] and words[-1] == "MYSELF"
    assert all(i["type"] in ("Word", "EndWord") for i in items)
    assert {"type", "stop_time"} == set(next(i for i in items if i["type"] == "EndWord"))


def test_offline_post_needs_the_header_key(server):
    assert _post(server, MID.read_bytes(), key=None, query="?auth_id=public_token")[0] == 401
    assert _post(server, MID.read_bytes(), key="wrong")[0] == 401


def test_offline_post_gives_500_when_no_slot_frees_up(ref_server, raw_ws):
    s = ref_server(batch_size=1, step_ms=0, offline_tries=3)
    holder = raw_ws(s)
    assert holder.recv() == Ready()
    status, body = _post(s, MID.read_bytes())
    assert status == 500 and b"no free channels" in body


def test_offline_post_rejects_undecodable_audio(server):
    assert _post(server, b"definitely not audio")[0] == 500
