"""The moshi-server STT wire protocol: msgpack maps tagged with "type", both directions.

Only the message vocabulary lives here (docs/protocol.md §2); WebSocket framing is `wsframe`, transport is `session`.
Audio encoding is the hot path of every load test, so `encode_audio` writes the msgpack bytes straight from
numpy instead of building a Python float per sample (byte-identical to
``msgpack.packb({"type": "Audio", "pcm": pcm.tolist()}, use_single_float=True)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

import msgpack
import numpy as np

SAMPLE_RATE = 24_000
FRAME_SAMPLES = 1920  # one model step: 80 ms at 24 kHz
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE
DEFAULT_PATH = "/api/asr-streaming"
API_KEY_HEADER = "kyutai-api-key"
AUTH_QUERY_PARAM = "auth_id"
NO_FREE_CHANNELS = "no free channels"


class ProtocolError(ValueError):
    """A message that is not valid msgpack or not a known, well-formed message."""


# --- server -> client -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ready:
    pass


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    start_time: float


@dataclass(frozen=True, slots=True)
class EndWord:
    stop_time: float


@dataclass(frozen=True, slots=True)
class Step:
    step_idx: int
    prs: tuple[float, ...]
    buffered_pcm: int


@dataclass(frozen=True, slots=True)
class Marker:
    id: int


@dataclass(frozen=True, slots=True)
class Error:
    message: str


ServerMessage = Union[Ready, Word, EndWord, Step, Marker, Error]


def _decode_map(data: bytes) -> dict[str, Any]:
    try:
        msg = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise ProtocolError(f"not msgpack ({type(exc).__name__}: {exc}); first bytes {data[:16].hex()}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError(f"not a msgpack map with a 'type' string: {str(msg)[:80]!r}")
    return msg


def decode_server_message(data: bytes) -> ServerMessage:
    """Decode one binary WebSocket message from the server; ProtocolError for anything else."""
    msg = _decode_map(data)
    kind = msg["type"]
    try:
        if kind == "Step":
            return Step(int(msg["step_idx"]), tuple(msg["prs"]), int(msg["buffered_pcm"]))
        if kind == "Word":
            return Word(str(msg["text"]), float(msg["start_time"]))
        if kind == "EndWord":
            return EndWord(float(msg["stop_time"]))
        if kind == "Ready":
            return Ready()
        if kind == "Marker":
            return Marker(int(msg["id"]))
        if kind == "Error":
            return Error(str(msg["message"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"malformed {kind} message: {exc!r}") from None
    raise ProtocolError(f"unknown server message type {kind!r}")


def encode_server_message(msg: ServerMessage) -> bytes:
    """What the server sends (used by the reference server): a map with "type" first, fields in declaration order."""
    if isinstance(msg, Step):
        body = {"type": "Step", "step_idx": msg.step_idx, "prs": list(msg.prs), "buffered_pcm": msg.buffered_pcm}
        return msgpack.packb(body, use_single_float=True)
    if isinstance(msg, Word):
        return msgpack.packb({"type": "Word", "text": msg.text, "start_time": msg.start_time})
    if isinstance(msg, EndWord):
        return msgpack.packb({"type": "EndWord", "stop_time": msg.stop_time})
    if isinstance(msg, Ready):
        return READY_BYTES
    if isinstance(msg, Marker):
        return msgpack.packb({"type": "Marker", "id": msg.id})
    if isinstance(msg, Error):
        return msgpack.packb({"type": "Error", "message": msg.message})
    raise TypeError(f"not a server message: {msg!r}")


READY_BYTES = msgpack.packb({"type": "Ready"})
# How every Step starts on the wire: a 4-entry map, "type" first (rmp_serde writes the tag of an internally tagged
# enum first). Lets a receiver recognise the commonest message by its bytes instead of decoding it.
STEP_PREFIX = b"\x84" + msgpack.packb("type") + msgpack.packb("Step")


# --- client -> server -------------------------------------------------------------------------------------------


@dataclass(slots=True)  # not frozen: the server builds one per 80 ms frame, and a frozen __init__ costs more
class Audio:
    pcm: np.ndarray  # float32, mono, 24 kHz


@dataclass(frozen=True, slots=True)
class Init:
    pass


@dataclass(frozen=True, slots=True)
class OggOpus:
    data: bytes


ClientMessage = Union[Audio, Marker, Init, OggOpus]

_AUDIO_PREFIX = msgpack.packb({"type": "Audio"})[1:] + msgpack.packb("pcm")  # map body before the array
_F32_WIRE = np.dtype([("tag", "u1"), ("value", ">f4")])


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def encode_audio(pcm: np.ndarray) -> bytes:
    """msgpack ``{"type": "Audio", "pcm": [float32...]}`` built from the array's bytes, no Python floats."""
    samples = np.ascontiguousarray(pcm, dtype=np.float32).reshape(-1)
    wire = np.empty(samples.size, dtype=_F32_WIRE)
    wire["tag"] = 0xCA  # msgpack float32
    wire["value"] = samples
    return b"\x82" + _AUDIO_PREFIX + _array_header(samples.size) + wire.tobytes()


PACKED_AUDIO_HEAD = b"\x82" + _AUDIO_PREFIX + b"\xdc"  # ... then a 16-bit sample count


def packed_audio_pcm(payload: np.ndarray) -> np.ndarray | None:
    """The common case (float32 Audio exactly as clients pack it, 16..65535 samples) straight into numpy, from the
    message as a uint8 array; None means "decode fully"."""
    head = len(PACKED_AUDIO_HEAD)
    start = payload[: head + 2].tobytes()
    if start[:head] != PACKED_AUDIO_HEAD or len(start) != head + 2:
        return None
    n = int.from_bytes(start[head:], "big")
    body = payload[head + 2 :]
    if body.size != 5 * n or body[::5].tobytes() != b"\xca" * n:  # every sample a msgpack float32
        return None
    return body.view(_F32_WIRE)["value"].astype(np.float32)


def _decode_packed_audio(data: bytes) -> Audio | None:
    pcm = packed_audio_pcm(np.frombuffer(data, dtype=np.uint8))
    return None if pcm is None else Audio(pcm)


def encode_marker(marker_id: int) -> bytes:
    return msgpack.packb({"type": "Marker", "id": int(marker_id)})


def decode_client_message(data: bytes) -> ClientMessage:
    """Decode what a client sent, as the real server's serde would: anything unknown is a ProtocolError."""
    fast = _decode_packed_audio(data)
    if fast is not None:
        return fast
    msg = _decode_map(data)
    kind = msg["type"]
    if kind == "Audio":
        pcm = msg.get("pcm")
        if not isinstance(pcm, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in pcm):
            raise ProtocolError("Audio.pcm must be an array of numbers")
        return Audio(np.asarray(pcm, dtype=np.float32))
    if kind == "Marker":
        marker_id = msg.get("id")
        if not isinstance(marker_id, int) or isinstance(marker_id, bool):
            raise ProtocolError("Marker.id must be an integer")
        return Marker(marker_id)
    if kind == "Init":
        return Init()
    if kind == "OggOpus":
        pages = msg.get("data")
        if not isinstance(pages, (bytes, bytearray)):
            raise ProtocolError("OggOpus.data must be bytes")
        return OggOpus(bytes(pages))
    raise ProtocolError(f"unknown client message type {kind!r}")
