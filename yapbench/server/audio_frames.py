"""The server's receive fast path: one masked WebSocket frame holding a float32 Audio message -> its PCM.

Almost everything a streaming client sends is the same message: a final, masked binary frame (16-bit length)
carrying ``{"type": "Audio", "pcm": [1920 msgpack float32]}``, usually alone in one read (several per read, and
one cut across two, once a server falls behind: `Connection` walks those frame by frame through here too). Decoding it
the general way (frame parser, unmask, msgpack) costs several numpy calls and copies per frame; here it is one XOR
over aligned 32-bit words in a reused buffer, one comparison of the float tags and one byte-swapping copy, through views
built once per message length. Anything else (other messages, several frames in one read, a float64 sample) gets
None and goes the general way (`FrameReader`, `protocol.decode_client_message`), which accepts and rejects
exactly the same bytes.
"""

from __future__ import annotations

import numpy as np

from ..protocol import PACKED_AUDIO_HEAD

_HEAD = len(PACKED_AUDIO_HEAD) + 2  # then the 16-bit sample count, then 5 bytes per sample
_F32_TAG = 0xCA
_BE_F32 = np.dtype(">f4")
MAX_LAYOUTS = 64  # message lengths with buffers; a client that varies its lengths more goes the general way


class _Layout:
    """Buffers and views for one payload length. The payload's first `skip` bytes (length % 4, all inside the
    message head) are left out of the buffer so that the rest is whole 32-bit words."""

    __slots__ = ("skip", "bytes", "words", "head", "tags", "ca", "values", "head_skipped", "head_rest")

    def __init__(self, length: int) -> None:
        n = (length - _HEAD) // 5
        self.skip = length % 4
        buf = np.empty(length - self.skip, dtype=np.uint8)
        self.bytes = buf.data  # a memoryview of the buffer
        self.words = buf.view(np.uint32)
        self.head = buf[: _HEAD - self.skip]
        self.tags = np.ndarray((n,), np.uint8, buf, _HEAD - self.skip, (5,))
        self.ca = bytes([_F32_TAG]) * n
        self.values = np.ndarray((n,), _BE_F32, buf, _HEAD - self.skip + 1, (5,))
        head = PACKED_AUDIO_HEAD + n.to_bytes(2, "big")
        self.head_skipped, self.head_rest = int.from_bytes(head[: self.skip], "little"), head[self.skip :]


class MaskedAudioDecoder:
    """Shared by every connection of one server (the event loop runs one callback at a time and the PCM is copied
    out), so it holds one buffer per message length seen, not one per connection."""

    def __init__(self) -> None:
        self._layouts: dict[int, _Layout] = {}

    def decode(self, data: bytes, start: int = 0) -> np.ndarray | None:
        """float32 PCM when `data` holds one such frame, whole, from `start` on; None otherwise."""
        if len(data) < start + 8 or data[start] != 0x82 or data[start + 1] != 0xFE:  # FIN + binary, mask + 16-bit
            return None
        length = (data[start + 2] << 8) | data[start + 3]
        if len(data) < start + 8 + length:
            return None
        layout = self._layouts.get(length)
        if layout is None:
            if (length - _HEAD) % 5 or length < _HEAD or len(self._layouts) >= MAX_LAYOUTS:
                return None
            layout = self._layouts[length] = _Layout(length)
        key = data[start + 4 : start + 8]
        skip, payload = layout.skip, start + 8
        rotated = int.from_bytes(key[skip:] + key[:skip], "little")  # the key as it lines up with the words
        # an aligned copy: numpy XORs aligned words much faster
        layout.bytes[:] = memoryview(data)[payload + skip : payload + length]
        np.bitwise_xor(layout.words, rotated, out=layout.words)
        if skip and int.from_bytes(data[payload : payload + skip], "little") ^ \
                int.from_bytes(key[:skip], "little") != layout.head_skipped:
            return None
        if layout.head.tobytes() != layout.head_rest or layout.tags.tobytes() != layout.ca:
            return None
        return layout.values.astype(np.float32)
