"""The option table drives every surface: yapbench's commands, Locust's parser and web UI form, and the Locust
command line `yapbench run` / `yapbench capacity` build. Locust's side is checked with Locust's own parser in a
child process (locust is never imported into pytest: gevent would patch it)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from yapbench.cli import build_parser
from yapbench.commands.run import locust_command
from yapbench.options import OPTIONS, On, Option

# Locust's own parser, with yapbench's options added by the listener the locustfile imports: parses argv, answers
# each flag's parsed value and which options the web UI form shows (and masks).
LOCUST_SIDE = """
import json, sys
import yapbench.locust.options  # registers the init_command_line_parser listener
from locust.argument_parser import get_parser, ui_extra_args_dict
argv, flags = json.loads(sys.stdin.read())
parser = get_parser()
parsed = vars(parser.parse_args(argv))
values = {f: parsed[parser._option_string_actions[f].dest] for f in flags}
form = {k: v["is_secret"] for k, v in ui_extra_args_dict([]).items()}
print(json.dumps({"values": values, "form": form}))
"""


def locust_side(argv: list[str], flags: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", LOCUST_SIDE], input=json.dumps([argv, flags]), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def unusual_value(opt: Option) -> object:
    """A value other than the default, valid for the option, to follow through every surface."""
    kwargs = opt.kwargs | opt.cli
    if kwargs.get("action") == "store_true":
        return True
    if "choices" in kwargs:
        return [c for c in kwargs["choices"] if c != kwargs.get("default")][-1]
    if kwargs.get("type") in (int, float):
        return kwargs["type"](kwargs.get("default") or 0) + 3
    return {"--run-time": "7m", "--host": "ws://127.0.0.1:9", "--conversation": "turns=2-3,pause=1-2.5s"}.get(
        opt.flag, f"{opt.dest}-value")


def cli_argv(opt: Option, value: object) -> list[str]:
    return [opt.flag] if value is True else [opt.flag, str(value)]


def test_every_option_yapbench_run_passes_on_reaches_locust_with_its_value():
    passed = [o for o in OPTIONS if On.RUN in o.on and On.PASSED in o.on and o.flag != "--host"]
    assert len(passed) > 20
    chosen = {o.flag: unusual_value(o) for o in passed}
    args = build_parser().parse_args(["run", *[a for o in passed for a in cli_argv(o, chosen[o.flag])]])
    cmd = locust_command(args, "ws://127.0.0.1:9", "runs/r1")
    assert cmd[cmd.index("-f") + 1].endswith("locustfile.py") and "--headless" in cmd
    side = locust_side(cmd[cmd.index("-f"):], [*chosen, "--host"])
    expected = chosen | {"--run-dir": "runs/r1", "--host": "ws://127.0.0.1:9", "--run-time": 7 * 60}
    assert side["values"] == expected


def test_yapbench_run_leaves_unset_options_to_locust_defaults_and_never_passes_a_key(monkeypatch):
    monkeypatch.setenv("KYUTAI_API_KEY", "secret-key-never-on-argv")
    args = build_parser().parse_args(["run"])
    cmd = locust_command(args, "", "runs/r2")
    assert "--host" not in cmd and "--gates" not in cmd and "--processes" not in cmd and "--no-report" not in cmd
    assert not any("secret-key" in a or a == "--api-key" for a in cmd)
    side = locust_side(cmd[cmd.index("-f"):], ["--users", "--samples", "--speed", "--shape"])
    assert side["values"] == {"--users": 20, "--samples": "mid.wav,short-noisy.wav,real/en_*", "--speed": 1.0,
                              "--shape": "none"}


def test_capacity_hands_its_own_settings_to_locust():
    args = build_parser().parse_args(["capacity", "--host", "ws://127.0.0.1:9", "--target-policy", "least_loaded"])
    args.users, args.shape, args.capacity_spec = 64, "capacity", "runs/r3/capacity_spec.json"
    cmd = locust_command(args, "ws://127.0.0.1:9", "runs/r3")
    side = locust_side(cmd[cmd.index("-f"):], ["--users", "--shape", "--capacity-spec", "--target-policy"])
    assert side["values"] == {"--users": 64, "--shape": "capacity", "--capacity-spec": "runs/r3/capacity_spec.json",
                              "--target-policy": "least_loaded"}


def test_the_web_ui_form_shows_exactly_the_tables_web_ui_options_and_masks_the_key():
    form = locust_side([], [])["form"]
    assert form == {o.dest: o.secret for o in OPTIONS if On.WEB_UI in o.on}
    assert form["api_key"] is True and "capacity_spec" not in form


@pytest.mark.parametrize("command,flag", [("run", "--slo"), ("capacity", "--users"), ("warmup", "--host"),
                                          ("run", "--capacity-spec"), ("run", "--api-key")])
def test_an_option_appears_only_where_the_table_says(command, flag, capsys):
    # --api-key: not an abbreviation of --api-key-file either, which would read the key as a path and name it in
    # the error
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, flag, "1"])
    assert exc.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def test_per_command_differences_stay_per_command(capsys):
    parser = build_parser()
    assert parser.parse_args(["warmup"]).speed == 1000.0 and parser.parse_args(["client", "f.wav"]).speed == 1.0
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--shape", "capacity"])  # the search's shape is capacity's alone
    assert "invalid choice: 'capacity'" in capsys.readouterr().err
