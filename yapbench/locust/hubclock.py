"""Locust's `-t` must count from the start of the load, not from process start.

gevent's event loop caches its clock, and Locust arms the run-time timer (`gevent.spawn_later(run_time, ...)`)
before the hub has run once: the cached time is still the one of the hub's creation, during the imports, so on a
busy machine where importing and decoding the samples take longer than `-t`, a `-t 4s` run was stopped 0.4 s
after it began. Refreshing the clock at the end of init (every other init listener has run: this module is
imported last) arms the timer from now.
"""

from __future__ import annotations

import gevent
from locust import events


@events.init.add_listener
def _refresh_clock(**_kw) -> None:
    gevent.get_hub().loop.update_now()
