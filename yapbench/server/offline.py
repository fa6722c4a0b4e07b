"""POST /api/asr-streaming: offline transcription of a whole file through a slot (docs/protocol.md §1b).

The handler waits for a free slot (a retry every 100 ms), then feeds the loop what the real handler feeds it:
Init, the whole file as one Audio, Marker{id: 0}, 10 s of zeros, and collects Word/EndWord/Error until the
Marker comes back. The file goes through the loop at one frame per step, not in real time.
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import TYPE_CHECKING, Any

import numpy as np
import soundfile

from ..audio import to_server_format
from ..protocol import SAMPLE_RATE, Audio, EndWord, Error, Marker, ServerMessage, Word

if TYPE_CHECKING:
    from .model_loop import ModelLoop

RETRY_EVERY_S = 0.1
TRAILING_ZEROS = 10 * SAMPLE_RATE


class NoFreeChannels(Exception):
    pass


def decode_upload(body: bytes) -> np.ndarray:
    """Channel 0 of any file libsndfile reads, at 24 kHz; ValueError says why not."""
    try:
        data, rate = soundfile.read(io.BytesIO(body), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises its own error types for every malformed input
        raise ValueError(f"cannot decode the audio: {exc}") from None
    if data.shape[0] == 0:
        raise ValueError("the audio has no samples")
    return to_server_format(data[:, 0], int(rate))


def _as_json(msg: ServerMessage) -> dict[str, Any]:
    if isinstance(msg, Word):
        return {"type": "Word", "text": msg.text, "start_time": msg.start_time}
    if isinstance(msg, EndWord):
        return {"type": "EndWord", "stop_time": msg.stop_time}
    assert isinstance(msg, Error)
    return {"type": "Error", "message": msg.message}


class OfflineSink:
    """Holds a slot for one POST; collects what the loop sends it."""

    def __init__(self, conn_id: int) -> None:
        self.conn_id = conn_id
        self.out_closed = False
        self.items: list[dict[str, Any]] = []
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def queue(self, kind: str, payload: bytes, msg: ServerMessage | None) -> None:
        if kind in ("Word", "EndWord", "Error") and msg is not None:
            self.items.append(_as_json(msg))
        elif kind == "Marker" and not self.done.done():
            self.done.set_result(True)

    def flush(self) -> None:
        pass

    def released(self, close_code: int | None | bool) -> None:
        if not self.done.done():
            self.done.set_result(False)


async def transcribe(model: "ModelLoop", pcm: np.ndarray, conn_id: int, tries: int) -> bytes:
    """The JSON array the real server answers with; NoFreeChannels after `tries` failed attempts."""
    sink = OfflineSink(conn_id)
    for _ in range(tries):
        slot = model.acquire(sink, count_connect=False)
        if slot is not None:
            break
        await asyncio.sleep(RETRY_EVERY_S)
    else:
        raise NoFreeChannels()
    for msg in (Audio(pcm), Marker(0), Audio(np.zeros(TRAILING_ZEROS, dtype=np.float32))):
        model.push(slot, msg)
    try:
        await sink.done
    finally:
        slot.recv_done = True  # the handler drops its sender: the slot is released once its input is drained
        model.wake(slot)
    return json.dumps(sink.items).encode()
