"""The model loop of batched_asr.rs (`start_model_loop`, `pre_process`, `post_process`), as one asyncio task.

Each iteration takes at most one inbound message per slot (Init -> Ready and a slot reset, Marker -> scheduled
echo, Audio -> the slot's PCM buffer), builds the batch from every slot holding a full frame and runs one step
for the whole batch if any slot has one; otherwise it sleeps 2 ms. The step counter is global, and a Marker's echo
is due at global step S + asr_delay_in_tokens + whole frames buffered in its slot when it was consumed.

Unlike the real loop, an iteration only visits "dirty" slots (those with queued input, buffered frames or a
pending release): that keeps an iteration's cost proportional to the traffic, not to batch_size, which is what
lets one core carry thousands of streams.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import msgpack
import numpy as np

from ..protocol import (FRAME_SAMPLES, Audio, EndWord, Error, Init, Marker, OggOpus, Ready, Word,
                        encode_server_message, READY_BYTES)
from .config import FaultConfig, ServerConfig
from .engines.base import Engine
from .eventlog import EventLog
from .prom import AsrMetrics
from .slots import SessionFaults, Sink, Slot

log = logging.getLogger("yapbench.server")

IDLE_SLEEP_S = 0.002
WARMUP_STEPS = 2  # the real loop runs two warm-up steps, so the first Step message has step_idx 3
STATS_EVERY_S = 10.0
FAULT_ERROR = "fault injected: model error"
_F32_WIRE = np.dtype([("tag", "u1"), ("value", ">f4")])
_STEP_HEAD = msgpack.packb("type") + msgpack.packb("Step") + msgpack.packb("step_idx")
_STEP_BUFFERED = msgpack.packb("buffered_pcm")
# The Step's last field for the commonest values (0: the frame just stepped was the only one buffered).
_STEP_TAILS = [_STEP_BUFFERED + msgpack.packb(n) for n in range(128)]


class ModelLoop:
    def __init__(self, config: ServerConfig, engine: Engine, metrics: AsrMetrics, events: EventLog | None) -> None:
        b = config.batch_size
        self.config = config
        self.engine = engine
        self.metrics = metrics
        self.events = events
        self.delay = config.asr_delay_in_tokens
        self.step_cost_s = config.step_cost_s(engine.default_step_ms)
        self.slots: list[Slot | None] = [None] * b
        self._free = list(range(b))  # a heap: the lowest free index first, like the real linear scan
        self._dirty: set[int] = set()
        self._batch = np.zeros((b, FRAME_SAMPLES), dtype=np.float32)
        self._mask = np.zeros(b, dtype=bool)
        self.step_idx = 0  # the loop's counter, which Marker echoes are scheduled on
        self.model_step_idx = WARMUP_STEPS  # the model state's counter, reported in Step messages
        self._markers: list[tuple[int, int, int, int, int]] = []  # (due step, seq, slot, channel id, marker id)
        self._marker_seq = 0
        self._next_channel_id = 1
        self._sessions = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="engine") if engine.blocking else None
        self._heads_prefix = b"\xa3prs" + bytes([0x90 | config.extra_heads]) if config.extra_heads else b""
        self._stats = [0, 0, 0.0]  # steps, frames, step seconds since the last stats line
        self._stats_at = time.monotonic()
        self.stopping = False

    # --- slots --------------------------------------------------------------------------------------------------

    @property
    def used_slots(self) -> int:
        return len(self.slots) - len(self._free)

    def acquire(self, sink: Sink, count_connect: bool = True, faults: bool = True) -> Slot | None:
        """A free slot for a new connection, with Init queued (so Ready comes from the loop); None when full."""
        if count_connect:
            self.metrics.connect += 1
        if not self._free:
            return None
        index = heapq.heappop(self._free)
        if faults:  # sessions are numbered apart from connections, so probes and HTTP polls do not shift them
            self._sessions += 1
        session_faults = SessionFaults(self.config.faults if faults else FaultConfig(), self.config.seed,
                                       self._sessions)
        slot = Slot(index, sink, self._next_channel_id, session_faults)
        self._next_channel_id += 1
        self.slots[index] = slot
        self.metrics.open_channels += 1
        if slot.faults.ready_delay_ms > 0:
            slot.held = True
            asyncio.get_running_loop().call_later(slot.faults.ready_delay_ms / 1000.0, self._unhold, slot)
        else:
            slot.inbox.append(Init())
            self._dirty.add(index)
        return slot

    def _unhold(self, slot: Slot) -> None:
        if self.slots[slot.index] is slot:
            slot.held = False
            slot.inbox.appendleft(Init())
            self._dirty.add(slot.index)

    def push(self, slot: Slot, msg: Audio | Marker | Init | OggOpus) -> None:
        slot.inbox.append(msg)
        self._dirty.add(slot.index)

    def wake(self, slot: Slot) -> None:
        """Something changed for this slot besides input (receive side ended, send side closed)."""
        if self.slots[slot.index] is slot:
            self._dirty.add(slot.index)

    def _release(self, slot: Slot, close_code: int | None | bool = False) -> None:
        self.slots[slot.index] = None
        heapq.heappush(self._free, slot.index)
        self._dirty.discard(slot.index)
        self.metrics.open_channels -= 1
        self.metrics.num_steps.observe(float(slot.steps))
        log.info("released slot batch_idx=%d conn=%d steps=%d", slot.index, slot.sink.conn_id, slot.steps)
        if self.events:
            self.events.event("release", slot.sink.conn_id, slot=slot.index, steps=slot.steps)
        slot.sink.released(close_code)

    # --- the loop -----------------------------------------------------------------------------------------------

    async def run(self) -> None:
        log.info("warming-up the asr")
        await self._call_engine(self.engine.warmup)
        log.info("starting asr loop %d", len(self.slots))
        while not self.stopping:
            active = self._pre_process()
            if not active:
                await asyncio.sleep(IDLE_SLEEP_S)
                continue
            rows = [s.index for s in active]
            self._mask[rows] = True
            start = time.perf_counter()
            out = await self._call_engine(self.engine.step, self._batch, self._mask)
            remaining = self.step_cost_s - (time.perf_counter() - start)
            # The simulated GPU time is a sleep, so a saturated server stays cheap and keeps reading its sockets.
            await asyncio.sleep(remaining if remaining > 0 else 0)
            elapsed = time.perf_counter() - start
            self.metrics.step_duration.observe(elapsed)
            self.step_idx += 1
            self.model_step_idx += 1
            self._post_process(out.tokens, out.prs, active, rows)
            self._mask[rows] = False
            self._log_stats(len(active), elapsed)

    async def _call_engine(self, fn, *args):  # type: ignore[no-untyped-def]
        if self._executor is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _pre_process(self) -> list[Slot]:
        active: list[Slot] = []
        to_flush: list[Slot] = []
        batch, dirty = self._batch, self._dirty
        for i in list(dirty):
            s = self.slots[i]
            if s is None:
                dirty.discard(i)
                continue
            if s.sink.out_closed:
                self._release(s)
                continue
            if s.held or s.stalled:
                dirty.discard(i)
                continue
            frame = None
            if s.inbox:
                msg = s.inbox.popleft()
                if type(msg) is Audio:
                    frame = s.buf.extend(msg.pcm)
                elif type(msg) is Init:
                    s.sink.queue("Ready", READY_BYTES, Ready())
                    to_flush.append(s)
                    self.engine.reset_slot(i)
                    s.words.reset()
                elif type(msg) is Marker:
                    due = self.step_idx + self.delay + s.buf.size // FRAME_SAMPLES
                    heapq.heappush(self._markers, (due, self._marker_seq, i, s.channel_id, msg.id))
                    self._marker_seq += 1
                    log.info("received marker bid=%d id=%d conn=%d due_step=%d", i, msg.id, s.sink.conn_id, due)
                else:  # OggOpus: the real decoder would run here; without libopus this is its error path
                    log.error("oggopus not supported bid=%d conn=%d", i, s.sink.conn_id)
            elif s.recv_done:
                self._release(s)  # moshi: try_recv -> Disconnected; buffered PCM is dropped
                continue
            else:
                frame = s.buf.take()
            if frame is not None:
                batch[i] = frame
                s.steps += 1
                active.append(s)
            if not (s.inbox or s.recv_done or s.buf.size >= FRAME_SAMPLES):
                dirty.discard(i)
        for s in to_flush:
            s.sink.flush()  # Ready goes out now, not after the step (the real send loop is independent)
        return active

    def _post_process(self, tokens: np.ndarray, prs: np.ndarray | None, active: list[Slot], rows: list[int]) -> None:
        step_bytes: list[bytes] | None = None
        if prs is not None and self._heads_prefix:
            wire = np.empty((len(active), prs.shape[1]), dtype=_F32_WIRE)
            wire["tag"] = 0xCA
            wire["value"] = prs[rows]
            raw = wire.tobytes()
            width = wire.itemsize * prs.shape[1]
            head = b"\x84" + _STEP_HEAD + msgpack.packb(self.model_step_idx) + self._heads_prefix
            step_bytes = [head + raw[k * width : (k + 1) * width] for k in range(len(active))]
        token_list = tokens[rows].tolist()
        delay = self.delay
        for k, s in enumerate(active):
            sink = s.sink
            if step_bytes is not None:
                buffered = s.buf.size
                tail = _STEP_TAILS[buffered] if buffered < 128 else _STEP_BUFFERED + msgpack.packb(buffered)
                sink.queue("Step", step_bytes[k] + tail, None)
            word, end = s.words.push(token_list[k], delay)
            if word is not None:
                if s.faults.drop_word():
                    s.drop_next_end = True
                else:
                    msg = Word(self.engine.detokenize(word[0]), word[1])
                    sink.queue("Word", encode_server_message(msg), msg)
            if end is not None:
                if s.drop_next_end:
                    s.drop_next_end = False
                else:
                    end_msg = EndWord(end)
                    sink.queue("EndWord", encode_server_message(end_msg), end_msg)
        self._send_markers()
        for s in active:
            s.sink.flush()
            if s.faults.after_steps:
                self._step_faults(s)
        if self.events:
            self.events.maybe_flush()

    def _send_markers(self) -> None:
        markers = self._markers
        while markers and markers[0][0] <= self.step_idx:
            _, _, i, channel_id, marker_id = heapq.heappop(markers)
            s = self.slots[i]
            if s is not None and s.channel_id == channel_id:
                msg = Marker(marker_id)
                s.sink.queue("Marker", encode_server_message(msg), msg)
                s.sink.flush()
                log.info("sent marker bid=%d id=%d conn=%d", i, marker_id, s.sink.conn_id)

    def _step_faults(self, s: Slot) -> None:
        f = s.faults
        if f.error_after and s.steps == f.error_after:
            log.info("fault: Error mid-stream conn=%d after %d steps", s.sink.conn_id, s.steps)
            msg = Error(FAULT_ERROR)
            s.sink.queue("Error", encode_server_message(msg), msg)
            s.sink.flush()
            self._release(s, None)
        elif f.close_after and s.steps == f.close_after:
            log.info("fault: close 1011 conn=%d after %d steps", s.sink.conn_id, s.steps)
            self._release(s, 1011)
        elif f.stall_after and s.steps == f.stall_after:
            log.info("fault: stalling conn=%d after %d steps", s.sink.conn_id, s.steps)
            s.stalled = True
            stall = getattr(s.sink, "stall", None)
            if stall:
                stall()

    def _log_stats(self, frames: int, elapsed: float) -> None:
        stats = self._stats
        stats[0] += 1
        stats[1] += frames
        stats[2] += elapsed
        log.debug("step_idx=%d with_data=%d %.2fms", self.step_idx, frames, elapsed * 1000)
        now = time.monotonic()
        if now - self._stats_at >= STATS_EVERY_S:
            steps, total_frames, seconds = stats
            log.info("steps=%d (%.1f/s) frames=%d mean_step=%.2fms open_slots=%d", steps,
                     steps / (now - self._stats_at), total_frames, 1000 * seconds / steps, self.used_slots)
            self._stats, self._stats_at = [0, 0, 0.0], now

    def close(self) -> None:
        self.stopping = True
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self.engine.close()
