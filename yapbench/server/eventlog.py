"""The optional machine-readable event log (`--event-log FILE`): one JSON object per line.

Records: {"t": epoch s, "ev": "accept"|"reject"|"auth_failed"|"release"|"send", "conn": id, ...}. A "send" record
carries the message "type" (and "text" for a Word) and `t` is time.time() read right before the socket write, so a
client can compare its receive times with it. Lines are buffered and flushed every FLUSH_EVERY_S and at exit.
"""

from __future__ import annotations

import json
import time
from typing import IO, Any

FLUSH_EVERY_S = 0.2


class EventLog:
    def __init__(self, path: str) -> None:
        self._file: IO[str] = open(path, "a", encoding="utf-8", buffering=1 << 16)
        self._last_flush = time.monotonic()

    def event(self, ev: str, conn: int, t: float | None = None, **fields: Any) -> None:
        self._file.write(_line(ev, conn, time.time() if t is None else t, fields))

    def sends(self, conn: int, t: float, kinds: list[tuple[str, str | None]]) -> None:
        """One write for everything one socket write sent (a step's messages for one connection)."""
        head = f'{{"t":{t!r},"ev":"send","conn":{conn},"type":"'
        self._file.write("".join(head + kind + '"}\n' if text is None else
                                 _line("send", conn, t, {"type": kind, "text": text}) for kind, text in kinds))

    def maybe_flush(self) -> None:
        now = time.monotonic()
        if now - self._last_flush >= FLUSH_EVERY_S:
            self._file.flush()
            self._last_flush = now

    def close(self) -> None:
        self._file.close()


def _line(ev: str, conn: int, t: float, fields: dict[str, Any]) -> str:
    return json.dumps({"t": t, "ev": ev, "conn": conn, **fields}, separators=(",", ":")) + "\n"
