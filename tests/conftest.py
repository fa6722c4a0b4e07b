"""Shared fixtures. `ref_server(**options)` starts a reference server subprocess (`yapbench.server.launch`);
every server a test starts is stopped at teardown."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest

from yapbench.server.launch import ServerProcess, start_server


@pytest.fixture
def ref_server() -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def factory(**options: Any) -> ServerProcess:
        server = start_server(**options)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()
