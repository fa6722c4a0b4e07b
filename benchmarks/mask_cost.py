"""What a fresh WebSocket masking key per frame would cost the load generator (RFC 6455 section 5.3).

yapbench masks each clip's frames once, when the corpus loads, and every stream sends those bytes (docs/loadgen.md,
"Masking keys"). This measures, per 80 ms Audio frame (1920 float32 samples), the CPU of masking it afresh at send
time, two ways:

- `wsframe.client_frame`: a fresh key from os.urandom, the payload XORed by numpy (what the reference code does
  once per frame of a clip);
- the cheapest way found: keys drawn 4,096 at a time from os.urandom, the padded payload XORed as 32-bit words with
  one numpy call into a reused buffer that already holds the frame's header, no allocation per frame.

    .venv/bin/python benchmarks/mask_cost.py

Prints microseconds per frame (median of --repeats runs of --frames frames each) and the share of one core that
costs at 1,500 real-time streams (18,750 frames/s).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from yapbench import protocol as P
from yapbench import wsframe

FRAMES_PER_S_AT_1500 = 1500 / P.FRAME_SECONDS
KEYS_PER_DRAW = 4096


class FreshMasker:
    """One frame's bytes, masked with a fresh key at each call, into a buffer reused between calls."""

    def __init__(self, payload: bytes) -> None:
        head = wsframe.client_frame(payload, mask_key=b"\0\0\0\0")[: -len(payload) - 4]
        self.head_len = len(head) + 4  # header, then the key
        self.size = self.head_len + len(payload)
        words = -(-len(payload) // 4)
        padded = np.zeros(words * 4, dtype=np.uint8)
        padded[: len(payload)] = np.frombuffer(payload, dtype=np.uint8)
        self.payload = padded.view(np.uint32)
        pad_head = -self.head_len % 4  # so that the payload starts on a 4-byte boundary of the buffer
        self.buf = np.zeros(pad_head + self.head_len + words * 4, dtype=np.uint8)
        self.start = pad_head
        self.buf[pad_head: pad_head + len(head)] = np.frombuffer(head, dtype=np.uint8)
        self.out = self.buf[pad_head + self.head_len:].view(np.uint32)
        self.key_slot = self.buf[pad_head + self.head_len - 4: pad_head + self.head_len].view(np.uint32)
        self.keys = np.empty(0, dtype=np.uint32)
        self.next_key = 0

    def frame(self) -> memoryview:
        if self.next_key == self.keys.size:
            self.keys = np.frombuffer(os.urandom(4 * KEYS_PER_DRAW), dtype=np.uint32)
            self.next_key = 0
        key = self.keys[self.next_key]
        self.next_key += 1
        self.key_slot[0] = key
        np.bitwise_xor(self.payload, key, out=self.out)  # the key's bytes in memory order, as the wire needs
        return memoryview(self.buf)[self.start: self.start + self.size]


def per_frame_us(make_one, frames: int, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        t0 = time.process_time()
        for _ in range(frames):
            make_one()
        runs.append((time.process_time() - t0) / frames * 1e6)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    payload = P.encode_audio((rng.standard_normal(P.FRAME_SAMPLES) * 0.1).astype(np.float32))
    masker = FreshMasker(payload)
    # the cheap way produces exactly a valid masked frame: unmasked, it is the payload
    frame = bytes(masker.frame())
    key = frame[masker.head_len - 4: masker.head_len]
    assert wsframe.apply_mask(frame[masker.head_len:], key) == payload
    assert frame[: masker.head_len - 4] == wsframe.client_frame(payload)[: masker.head_len - 4]

    for name, make_one in (("wsframe.client_frame (os.urandom key, numpy XOR, new bytes)",
                            lambda: wsframe.client_frame(payload)),
                           ("batched keys, 32-bit XOR into a reused buffer", masker.frame)):
        us = per_frame_us(make_one, args.frames, args.repeats)
        print(f"{name}: {us:.2f} us per frame, {us * FRAMES_PER_S_AT_1500 / 1e6:.1%} of a core at 1,500 streams")


if __name__ == "__main__":
    main()
