"""The web UI's "STT" tab: exact live percentiles, outcomes, rejection rate, active streams, generator health;
and the start form checked before Locust starts a test.

Locust's React UI renders extra tabs from `extended_tabs`/`extended_tables` template arguments and fills them
from an `extended_stats` entry in its periodic /stats/requests poll; /stt/stats serves the same snapshot as JSON.

The form: Locust's /swarm handler writes its fields into `parsed_options` and starts the test, whose test_start
rebuilds the plan from them (recorder.py). Before that, the same fields are applied to a copy of the options and
checked here, so a bad field is answered in the form, as Locust answers a bad user count, instead of a test that
starts and stops at once; and the shape the form asks for (--shape) becomes the one Locust runs.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

from pathlib import Path

import gevent
from flask import Response, abort, jsonify, request, send_from_directory
from locust.env import Environment
from locust.runners import STATE_RUNNING, STATE_SPAWNING, MasterRunner
from locust.util.timespan import parse_timespan
from werkzeug.datastructures import MultiDict

from ..errors import UserError
from ..metricdefs import GENERATOR_LAG_LIMIT_MS
from ..metrics import PERCENTILES
from ..report.outputs import REPORT
from .live import INTERVAL_S, TABLE_METRICS
from .recorder import Recorder
from .shapes import shape_from_options, use_shape

TAB_KEY = "stt"
STATIC = Path(__file__).resolve().parent / "static"
COLUMNS = [("metric", "Metric"), ("count", "Count")] + [(f"p{q}", f"p{q} (ms)") for q in PERCENTILES] + [
    ("max", "max (ms)")]


def table_rows(snapshot: dict) -> list[dict]:
    rows = []
    for metric in TABLE_METRICS:
        s = snapshot["metrics"].get(metric)
        if not s:
            continue
        row = {"metric": f"{metric} (last {snapshot['window_s']:g} s)", "count": int(s["count"])}
        row.update({k: round(s[k], 1) for k in (*(f"p{q}" for q in PERCENTILES), "max")})
        rows.append(row)
    for outcome, n in sorted(snapshot["outcomes"].items()):
        rows.append({"metric": f"outcome: {outcome}", "count": n})
    rows.append({"metric": "rejection rate", "count": f"{snapshot['rejection_rate']:.1%}"})
    rows.append({"metric": "active streams", "count": snapshot["active_streams"]})
    if snapshot["generator_bound"]:
        rows.append({"metric": f"WARNING: generator send lag p99 > {GENERATOR_LAG_LIMIT_MS:g} ms: the load generator, "
                               "not the server, is the bottleneck (add workers)", "count": ""})
    return rows


def form_options(opts: Any, form: MultiDict) -> Any:
    """A copy of `opts` with the start form's fields, converted as Locust's /swarm handler converts them (each
    option keeps its type; -u, -r and -t under Locust's own names)."""
    new = copy.copy(opts)
    values = vars(new)
    for key, value in form.items():
        try:
            if key == "user_count":
                values["num_users"] = int(value)
            elif key == "spawn_rate":
                values["spawn_rate"] = float(value)
            elif key == "run_time":
                if value:
                    values["run_time"] = parse_timespan(value)
            elif key in values and key not in ("host", "user_classes", "profile"):
                old = values[key]
                values[key] = (value == "true") if isinstance(old, bool) else value if old is None else type(old)(value)
        except ValueError:
            raise UserError(f"{key.replace('_', '-')}: {value!r} is not a valid value") from None
    return new


def check_form(environment: Environment, rec: Recorder, form: MultiDict) -> None:
    """Before a test starts from the form: every field usable (UserError otherwise), and its shape chosen."""
    opts = form_options(environment.parsed_options, form)
    host = form.get("host") or environment.host
    rec.builder.build(opts, host, check_gates=True)  # the corpus it decodes is the test's, kept for its start
    if opts.shape == "capacity":
        raise UserError("shape: capacity is `yapbench capacity`'s search, not a shape to start from the form")
    use_shape(environment, shape_from_options(opts, None))


def install(environment: Environment, rec: Recorder) -> None:
    web_ui = environment.web_ui
    if web_ui is None:
        return
    app = web_ui.app
    assert app is not None  # (Locust's WebUI makes it in its constructor)
    web_ui.template_args["extended_tabs"] = [{"title": "STT", "key": TAB_KEY}]
    web_ui.template_args["extended_tables"] = [
        {"key": TAB_KEY, "structure": [{"key": k, "title": t} for k, t in COLUMNS]}]

    def snapshot() -> dict:
        return rec.live.snapshot()

    @app.before_request
    def _check_form():
        if request.path != "/swarm" or request.method != "POST":
            return None
        if environment.runner.state in (STATE_RUNNING, STATE_SPAWNING):
            return None  # editing a running test changes only its user count
        if isinstance(environment.runner, MasterRunner) and environment.runner.worker_count == 0:
            # Locust's master would answer "success" and start nothing: after a stop, each worker waits
            # --stop-timeout before it reports ready again.
            return jsonify({"success": False, "host": environment.host, "message": (
                "yapbench: no worker is ready yet (after a test stops, Locust's workers wait --stop-timeout, "
                f"{environment.stop_timeout:g} s, before they take the next one): start again in a moment")})
        if environment.available_shape_classes:
            return None  # the locustfile's own shapes: Locust's picker chooses
        try:
            check_form(environment, rec, request.form)
        except UserError as exc:
            return jsonify({"success": False, "message": f"yapbench: {exc}", "host": environment.host})
        return None

    @app.after_request
    def _extend(response):
        if request.path == "/stats/requests" and response.is_json:
            body = response.get_json()
            body["extended_stats"] = [{"key": TAB_KEY, "data": table_rows(snapshot())}]
            response.set_data(json.dumps(body))
        elif request.path == "/" and response.mimetype == "text/html":
            # Locust's page is a React app with no hook for scripts: the STT tab's charts and run list come in here.
            html = response.get_data(as_text=True)
            response.set_data(html.replace("</body>", '<script src="./stt/ui.js"></script></body>', 1))
        return response

    auth = web_ui.auth_required_if_enabled

    @app.route("/stt/ui.js")
    @auth
    def _script() -> Response:
        return send_from_directory(STATIC, "stt.js", mimetype="text/javascript", max_age=0)

    @app.route("/stt/stats")
    @auth
    def _stt_stats():
        return jsonify(snapshot())

    @app.route("/stt/chart")
    @auth
    def _chart():
        return jsonify({"interval_s": INTERVAL_S, "points": rec.live.chart(float(request.args.get("since", -1)))})

    @app.route("/stt/runs")
    @auth
    def _runs():
        return jsonify({"runs": [{
            "number": t.number, "run_id": t.run_id, "dir": str(t.dir), "started_at": t.started_at,
            "ended_at": t.ended_at, "exit_code": t.exit_code,
            "report": f"stt/runs/{t.number}/{REPORT}" if t.exit_code is not None and (t.dir / REPORT).exists()
            else None,
        } for t in rec.history.entries]})

    @app.route("/stt/runs/<int:number>/<path:name>")
    @auth
    def _run_file(number: int, name: str) -> Response:
        test = rec.history.find(number)
        if test is None:
            abort(404)  # only this process's runs: the web server shows no other directory
        return send_from_directory(test.dir.resolve(), name, max_age=0)  # safe_join: nothing outside the run

    environment.events.reset_stats.add_listener(lambda **_: rec.live.reset(rec.used_slots))
    gevent.spawn(_close_intervals, rec)


def _close_intervals(rec: Recorder) -> None:
    """One chart point every INTERVAL_S while a test runs, on a fixed cadence."""
    next_t = time.monotonic()
    while True:
        next_t += INTERVAL_S
        gevent.sleep(max(0.0, next_t - time.monotonic()))
        if rec.test is not None:
            rec.refresh_active()
            rec.live.close_interval()
