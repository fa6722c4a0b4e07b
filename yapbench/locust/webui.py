"""The web UI's "STT" tab: exact live percentiles, outcomes, rejection rate, active streams, generator health.

Locust's React UI renders extra tabs from `extended_tabs`/`extended_tables` template arguments and fills them
from an `extended_stats` entry in its periodic /stats/requests poll; /stt/stats serves the same snapshot as JSON.
"""

from __future__ import annotations

import json

from flask import jsonify, request
from locust import events

from ..metrics import PERCENTILES
from .live import SEND_LAG_WARN_MS, TABLE_METRICS
from .recorder import _recorders

TAB_KEY = "stt"
COLUMNS = [("metric", "Metric"), ("count", "Count")] + [(f"p{q}", f"p{q} (ms)") for q in PERCENTILES] + [
    ("max", "max (ms)")]


def table_rows(snapshot: dict) -> list[dict]:
    rows = []
    for metric in TABLE_METRICS:
        s = snapshot["metrics"].get(metric)
        if not s:
            continue
        row = {"metric": metric, "count": int(s["count"])}
        row.update({k: round(s[k], 1) for k in (*(f"p{q}" for q in PERCENTILES), "max")})
        rows.append(row)
    for outcome, n in sorted(snapshot["outcomes"].items()):
        rows.append({"metric": f"outcome: {outcome}", "count": n})
    rows.append({"metric": "rejection rate", "count": f"{snapshot['rejection_rate']:.1%}"})
    rows.append({"metric": "active streams", "count": snapshot["active_streams"]})
    if snapshot["generator_bound"]:
        rows.append({"metric": f"WARNING: generator send lag p99 > {SEND_LAG_WARN_MS:g} ms: the load generator, "
                               "not the server, is the bottleneck (add workers)", "count": ""})
    return rows


@events.init.add_listener
def _install_tab(environment, web_ui=None, **_kw) -> None:
    rec = _recorders.get(id(environment))
    if web_ui is None or rec is None:
        return
    web_ui.template_args["extended_tabs"] = [{"title": "STT", "key": TAB_KEY}]
    web_ui.template_args["extended_tables"] = [
        {"key": TAB_KEY, "structure": [{"key": k, "title": t} for k, t in COLUMNS]}]

    def snapshot() -> dict:
        rec.refresh_active()
        return rec.live.snapshot()

    @web_ui.app.after_request
    def _extend_stats(response):
        if request.path != "/stats/requests" or not response.is_json:
            return response
        body = response.get_json()
        body["extended_stats"] = [{"key": TAB_KEY, "data": table_rows(snapshot())}]
        response.set_data(json.dumps(body))
        return response

    @web_ui.app.route("/stt/stats")
    def _stt_stats():
        return jsonify(snapshot())

    environment.events.reset_stats.add_listener(rec.live.reset)
