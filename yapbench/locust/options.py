"""yapbench's options on Locust's command line and in its web UI: the table in yapbench.options."""

from __future__ import annotations

from locust import events

from ..options import add_locust_options

events.init_command_line_parser.add_listener(add_locust_options)
