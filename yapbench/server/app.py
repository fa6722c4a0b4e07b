"""The server: routes (docs/protocol.md §1), the model loop, keep-alive housekeeping, start and shutdown."""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
import os
import platform
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from ..protocol import API_KEY_HEADER, AUTH_QUERY_PARAM
from .audio_frames import MaskedAudioDecoder
from .config import ServerConfig
from .connection import Connection
from .engines import create_engine
from .engines.base import ModelSpec
from .eventlog import EventLog
from .httpio import Request, response, upgrade_problem
from .launch import PROBE_HEADER
from .model_loop import ModelLoop
from .offline import NoFreeChannels, decode_upload, transcribe
from .prom import AsrMetrics

log = logging.getLogger("yapbench.server")
JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
OFFLINE_TRIES = 1000  # 100 s of retries every 100 ms, as the real handler


def _build_info() -> dict[str, str]:
    now = datetime.now(timezone.utc)
    triple = f"{platform.machine()}-{sys.platform}"
    return {
        "build_timestamp": now.isoformat(), "build_date": now.date().isoformat(), "git_branch": "main",
        "git_timestamp": now.isoformat(), "git_date": now.date().isoformat(), "git_hash": "yapbench",
        "git_describe": f"yapbench-{__version__}", "rustc_host_triple": triple,
        "rustc_version": f"python {platform.python_version()}", "cargo_target_triple": triple,
    }


class Server:
    def __init__(self, config: ServerConfig, offline_tries: int = OFFLINE_TRIES) -> None:
        self.config = config
        self.offline_tries = offline_tries
        self.metrics = AsrMetrics()
        self.events = EventLog(config.event_log) if config.event_log else None
        options = dict(config.engine_options)
        if config.manifest:
            options.setdefault("manifest", config.manifest)
        spec = ModelSpec(config.batch_size, config.asr_delay_in_tokens, config.extra_heads, config.model,
                         config.temperature, config.seed, options, config.lm_model_file,
                         config.audio_tokenizer_file, config.text_tokenizer_file)
        self.engine = create_engine(config.engine, spec)
        self.model = ModelLoop(config, self.engine, self.metrics, self.events)
        self.audio_frames = MaskedAudioDecoder()  # the connections' receive fast path
        self.connections: set[Connection] = set()
        self.ws_connections: set[Connection] = set()
        self._conn_ids = 0
        self._build_info = json.dumps(_build_info()).encode()
        self._server: asyncio.base_events.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()

    def next_conn_id(self) -> int:
        self._conn_ids += 1
        return self._conn_ids

    # --- routes -------------------------------------------------------------------------------------------------

    def handle_request(self, conn: Connection, req: Request) -> None:
        if req.path == self.config.path:
            if req.method == "POST":
                self._offline(conn, req)
            else:
                self._asr_streaming(conn, req)
            return
        routes = {"/api/build_info": self._build_info_response, "/api/modules_info": self._modules_info,
                  "/metrics": self._metrics}
        handler = routes.get(req.path)
        if handler is not None:
            conn.respond(handler() if req.method == "GET" else response(405), close=not req.keep_alive)
        else:
            conn.respond(self._static(req), close=not req.keep_alive)

    def _asr_streaming(self, conn: Connection, req: Request) -> None:
        problem = upgrade_problem(req)  # axum's WebSocketUpgrade extractor runs before the handler (and auth)
        if problem is not None:
            status, text = problem
            conn.respond(response(status, text.encode(), TEXT if text else None), close=not req.keep_alive)
            return
        log.info("handling batched asr-streaming query conn=%d addr=%s", conn.conn_id, req.header("x-real-ip"))
        header_key = req.header(API_KEY_HEADER)
        query_key = next(iter(req.query.get(AUTH_QUERY_PARAM, ())), None)
        key = header_key if header_key is not None else query_key  # the header decides whenever it is present
        if key not in self.config.authorized_ids:
            log.info("auth failed conn=%d (%s)", conn.conn_id, "header" if header_key is not None else
                     "query" if query_key is not None else "no key")
            if self.events:
                self.events.event("auth_failed", conn.conn_id)
            conn.respond(response(401), close=not req.keep_alive)
            return
        redacted = "None" if query_key is None else 'Some("<redacted>")'
        log.info("batched-asr ws query query=AsrStreamingQuery { auth_id: %s } conn=%d", redacted, conn.conn_id)
        conn.upgrade(req, probe=req.header(PROBE_HEADER) is not None)

    def _offline(self, conn: Connection, req: Request) -> None:
        if req.header(API_KEY_HEADER) not in self.config.authorized_ids:  # no query fallback on this route
            conn.respond(response(401), close=not req.keep_alive)
            return
        conn.busy = True
        asyncio.get_running_loop().create_task(self._offline_answer(conn, req))

    async def _offline_answer(self, conn: Connection, req: Request) -> None:
        log.info("handling offline asr query conn=%d bytes=%d", conn.conn_id, len(req.body))
        try:
            pcm = decode_upload(req.body)
            body = await transcribe(self.model, pcm, conn.conn_id, self.offline_tries)
            answer = response(200, body, JSON)
        except ValueError as exc:
            answer = response(500, str(exc).encode(), TEXT)
        except NoFreeChannels:
            log.error("no free channels (offline) conn=%d", conn.conn_id)
            answer = response(500, b"no free channels", TEXT)
        conn.finish_async(answer, req.keep_alive)

    def _build_info_response(self) -> bytes:
        return response(200, self._build_info, JSON)

    def _modules_info(self) -> bytes:
        c = self.config
        info = [{"type": "batched_asr", "path": c.path, "lm": c.lm_model_file, "audio_tokenizer":
                 c.audio_tokenizer_file, "used_slots": str(self.model.used_slots), "total_slots": str(c.batch_size)}]
        return response(200, json.dumps(info).encode(), JSON)

    def _metrics(self) -> bytes:
        return response(200, self.metrics.render().encode(), "text/plain; version=0.0.4")

    def _static(self, req: Request) -> bytes:
        """ServeDir(static_dir): files under it, index.html for directories, 404 otherwise."""
        root = Path(self.config.static_dir).resolve()
        target = (root / req.path.lstrip("/")).resolve()
        if req.method not in ("GET", "HEAD") or not root.is_dir() or not target.is_relative_to(root):
            return response(404 if req.method in ("GET", "HEAD") else 405)
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            return response(404)
        body = target.read_bytes()
        return response(200, b"" if req.method == "HEAD" else body,
                        mimetypes.guess_type(target.name)[0] or "application/octet-stream")

    # --- lifecycle ----------------------------------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        period = min(0.25, self.config.ping_every_s / 20)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for conn in list(self.ws_connections):
                conn.check_timeouts(now)
            if self.events:
                self.events.maybe_flush()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stopped.set)
        self._server = await loop.create_server(lambda: Connection(self), self.config.addr, self.config.port,
                                                reuse_address=True, backlog=4096)
        port = self._server.sockets[0].getsockname()[1]
        self._tasks = [loop.create_task(self.model.run()), loop.create_task(self._housekeeping())]
        exit_after = self.config.faults.exit_after_s
        if exit_after > 0:
            loop.call_later(exit_after, self._exit_abruptly)
        where = f"http://{self.config.addr}:{port}"
        log.info("listening on %s", where)
        print(f"listening on {where} (WebSocket: ws://{self.config.addr}:{port}{self.config.path}, "
              f"engine {self.config.engine}, batch_size {self.config.batch_size})", flush=True)
        stopper = loop.create_task(self._stopped.wait())
        done, _ = await asyncio.wait([stopper, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper and task.exception() is not None:
                log.error("model loop err: %r", task.exception())
        await self.shutdown()

    def _exit_abruptly(self) -> None:
        log.warning("fault: exiting abruptly after %.1f s", self.config.faults.exit_after_s)
        logging.shutdown()
        if self.events:  # the event log is how tests account for every session: keep what it buffered
            self.events.close()
        os._exit(3)

    async def shutdown(self) -> None:
        log.info("shutting down: %d open connections", len(self.connections))
        if self._server is not None:
            self._server.close()
        self.model.close()
        for task in self._tasks:
            task.cancel()
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        if self.events:
            self.events.close()
