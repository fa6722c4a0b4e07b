"""End of a run, on the master or a standalone process: complete run.json, build the report, apply the gates.

The exit code is yapbench's, not Locust's "any failure exits 1": the gates' verdict with --gates, else 1 only when
no session completed. So a headless locust run is a CI gate by itself.
"""

from __future__ import annotations

import logging

from locust import events

from ..capacity.section import report_section
from ..finish import finish_run
from .recorder import _recorders

log = logging.getLogger("yapbench")


@events.quitting.add_listener
def _on_quitting(environment, **_kw) -> None:
    rec = _recorders.get(id(environment))
    if rec is None or rec.runlog is None:
        return
    rec.write_end_meta()
    rec.runlog.close()
    opts = environment.parsed_options
    capacity = report_section(rec.runlog.dir) if opts.shape == "capacity" and not opts.no_report else None
    environment.process_exit_code = finish_run(rec.runlog.dir, report=not opts.no_report, gates=opts.gates or None,
                                               baseline=opts.baseline or None, sections=[capacity] if capacity else [])
