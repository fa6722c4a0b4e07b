"""One streaming session: connect, wait for Ready, stream paced audio, flush with a Marker, close; measured.

The upgrade is yapbench.wsupgrade's request and checks over a plain TCP connection (proxies are not used); once the
server has answered 101, the socket is handed to the process's Streamer, which paces and parses for all streams at
once. This function blocks only the calling greenlet.
"""

from __future__ import annotations

import _socket  # the C socket: the Streamer drives the raw fd from the hub, outside gevent's socket wrapper
import bisect
import ipaddress
import itertools
import os
import socket
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

import gevent
import numpy as np

from . import protocol as P
from . import wsupgrade
from .metrics import Outcome, SessionResult, TurnTiming, WordTiming
from .streamer import MessageListener, PreparedClip, Stream, Streamer

# perf_counter -> epoch seconds, fixed once per process so every record shares one clock.
_EPOCH_OFFSET = time.time() - time.perf_counter()
_marker_ids = itertools.count(1)
RESOLVE_TTL_S = 60.0
_resolved: dict[tuple[str, int], tuple[float, int, tuple]] = {}  # (host, port) -> (expiry, family, sockaddr)


def epoch(perf: float) -> float:
    return perf + _EPOCH_OFFSET


@dataclass(frozen=True)
class SessionConfig:
    url: str  # ws://host:port/api/asr-streaming (the path is added when missing)
    api_key: str = "public_token"
    auth: str = "header"  # "header": kyutai-api-key; "query": ?auth_id= (what browsers must do)
    speed: float = 1.0  # 1.0 = real time; 2.0 = twice as fast
    connect_timeout_s: float = 10.0
    ready_timeout_s: float = 10.0
    flush_frames: int = 40  # silence frames after the Marker: > asr_delay_in_tokens (6 for 1B, 32 for 2.6B)
    flush_timeout_s: float = 15.0
    deadline_slack_s: float = 30.0  # beyond the audio's paced duration, before a session is declared stalled
    worker: str = ""

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError(f"speed must be > 0, got {self.speed}")
        if self.auth not in ("header", "query"):
            raise ValueError(f"auth must be 'header' or 'query', got {self.auth!r}")


def normalize_url(url: str) -> str:
    """Accept host:port, ws://host:port or a full URL; default the path to /api/asr-streaming."""
    if "://" not in url:
        url = "ws://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"{url}: the scheme must be ws:// or wss://")
    if not parts.hostname:
        raise ValueError(f"{url}: no host")
    path = parts.path if parts.path not in ("", "/") else P.DEFAULT_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def run_session(
    cfg: SessionConfig, clip: PreparedClip, listener: MessageListener | None = None, session_id: str | None = None,
    due: float | None = None,
) -> SessionResult:
    """Stream `clip` once; always returns a result with exactly one outcome (never raises for server behaviour).

    `due` (perf_counter seconds, open loop): when the session was due; connect_ms then counts from it, so a late
    start shows in the latency instead of vanishing (no coordinated omission)."""
    url = normalize_url(cfg.url)
    result = SessionResult(
        session_id=session_id or uuid.uuid4().hex[:16],
        target=url,
        sample=clip.name,
        speed=cfg.speed,
        started_at=time.time(),
        frames_planned=clip.n_frames,
        worker=cfg.worker,
    )
    t_connect = time.perf_counter()
    if due is not None:
        result.due_at, result.start_lag_ms = epoch(due), (t_connect - due) * 1000.0
    try:
        upgraded = _upgrade(cfg, url, result)
    except gevent.GreenletExit:
        result.outcome, result.error = Outcome.CANCELLED, "the load stopped while connecting"
        result.ended_at = time.time()
        raise SessionCancelled(result) from None
    if upgraded is None:
        result.ended_at = time.time()
        return result
    sock, early = upgraded
    t_upgraded = time.perf_counter()
    result.connect_ms = (t_upgraded - (t_connect if due is None else due)) * 1000.0

    stream = Stream(sock, clip, cfg.speed, next(_marker_ids), cfg.flush_frames, cfg.flush_timeout_s, listener)
    Streamer.for_current_hub().add(stream)
    try:
        if early:
            stream.receive(early)  # Ready often arrives in the same segment as the 101
        if not stream.ready.wait(cfg.ready_timeout_s):
            stream.finish(Outcome.NO_READY, f"neither Ready nor Error within {cfg.ready_timeout_s:g} s of the upgrade")
        deadline = clip.audio_s / cfg.speed + cfg.flush_timeout_s + cfg.deadline_slack_s
        if not stream.done.wait(deadline):
            stream.finish(Outcome.STALLED, f"not finished {deadline:.0f} s after Ready (the server stopped reading?)")
    except gevent.GreenletExit:
        # The load is stopping (Locust kills user greenlets): keep what was measured, then let the kill proceed.
        stream.finish(Outcome.CANCELLED, "the load stopped during the session")
        _fill_result(result, stream, t_upgraded)
        raise SessionCancelled(result) from None
    _fill_result(result, stream, t_upgraded)
    return result


class SessionCancelled(gevent.GreenletExit):
    """Raised through a killed session greenlet, carrying the partial result so it can still be recorded."""

    def __init__(self, result: SessionResult) -> None:
        super().__init__()
        self.result = result


def _upgrade(cfg: SessionConfig, url: str, result: SessionResult) -> tuple[_socket.socket, bytes] | None:
    """The WebSocket handshake: (a non-blocking raw socket, bytes that came after the reply head), or None with
    the result's outcome set."""
    if url.startswith("wss://"):
        result.outcome = Outcome.CONNECT_FAILED
        result.error = "wss:// is not supported by the streaming engine yet; use ws:// (e.g. through an SSH tunnel)"
        return None
    parts = urlsplit(url)
    headers = []
    query = parts.query
    if cfg.auth == "header":
        headers.append(f"{P.API_KEY_HEADER}: {cfg.api_key}")
    else:
        query = "&".join(q for q in (query, urlencode({P.AUTH_QUERY_PARAM: cfg.api_key})) if q)
    key = wsupgrade.new_key()
    host = parts.netloc.rsplit("@", 1)[-1]
    request = wsupgrade.request(host, parts.path + (f"?{query}" if query else ""), key, headers)
    deadline = time.monotonic() + cfg.connect_timeout_s
    try:
        tcp = _tcp_connect(url, cfg.connect_timeout_s)
        try:
            tcp.sendall(request)
            received = bytearray()
            while (split := wsupgrade.split_head(received)) is None:
                tcp.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = tcp.recv(4096)
                if not chunk:
                    raise ConnectionError("the server closed the connection during the upgrade")
                received += chunk
            head, rest = split
            wsupgrade.check_switch(wsupgrade.parse_reply(head), key)
        except BaseException:
            tcp.close()
            raise
    except wsupgrade.UpgradeError as exc:
        unauthorized = str(exc).startswith("HTTP 401")
        result.outcome = Outcome.AUTH_FAILED if unauthorized else Outcome.CONNECT_FAILED
        result.error = ("HTTP 401 Unauthorized: the API key is not in the server's authorized_ids" if unauthorized
                        else str(exc))
        return None
    except (OSError, ValueError) as exc:
        result.outcome = Outcome.CONNECT_FAILED
        result.error = _describe_connect_error(exc, url)
        return None
    raw = _socket.socket(fileno=tcp.detach())
    raw.setblocking(False)
    return raw, rest


def _tcp_connect(url: str, timeout_s: float) -> socket.socket:
    """The TCP connection the upgrade runs on (names are resolved once a minute, not per connect: gevent resolves on
    a thread pool, a thread hand-off and GIL contention per session at thousands of streams)."""
    parts = urlsplit(url)
    family, address = _address(parts.hostname or "", parts.port or 80)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a Marker must not wait behind Nagle
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _address(host: str, port: int) -> tuple[int, tuple]:
    """(family, sockaddr): a numeric host as is, a name resolved at most once per RESOLVE_TTL_S."""
    try:
        ip = ipaddress.ip_address(host)
        return (socket.AF_INET6, (host, port, 0, 0)) if ip.version == 6 else (socket.AF_INET, (host, port))
    except ValueError:
        pass
    cached = _resolved.get((host, port))
    if cached is None or cached[0] < time.monotonic():
        family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        cached = _resolved[(host, port)] = (time.monotonic() + RESOLVE_TTL_S, family, sockaddr)
    return cached[1], cached[2]


def _describe_connect_error(exc: Exception, url: str) -> str:
    host = urlsplit(url).netloc
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {host} (is the server running?)"
    if isinstance(exc, TimeoutError) or "timed out" in str(exc):
        return f"connecting to {host} timed out"
    return str(exc) or type(exc).__name__


def _fill_result(result: SessionResult, s: Stream, t_upgraded: float) -> None:
    result.outcome = s.outcome or Outcome.DISCONNECTED
    result.error = s.error
    result.close_code = s.close_code
    result.ended_at = time.time()
    result.steps = s.steps
    result.frames_sent = s.frames_sent
    result.audio_s = s.frames_sent * P.FRAME_SECONDS
    if s.t_ready is None:
        return
    result.ready_ms = (s.t_ready - t_upgraded) * 1000.0
    sent = s.send_perf[: s.frames_sent]
    complete = int(np.count_nonzero(sent))  # frames still queued in a full socket buffer have no send time yet
    sent = sent[:complete]
    if complete == 0:
        return
    t0 = sent[0]
    result.send_times = sent + _EPOCH_OFFSET
    result.send_lag_ms = ((sent - s.scheduled(complete)) * 1000.0).astype(np.float32)
    if s.t_first_msg is not None:
        result.first_response_ms = (s.t_first_msg - t0) * 1000.0
    if s.t_first_word is not None:
        result.first_word_ms = (s.t_first_word - t0) * 1000.0
    if s.t_marker is not None:
        result.finalize_ms = (s.t_marker - sent[-1]) * 1000.0
    result.backlog_max_ms = s.backlog_max_ms

    def sent_at(audio_time: float) -> float:
        # The frame holding audio second x; timestamps past the audio sent (silence tail) map to the last frame.
        i = min(max(int(audio_time / P.FRAME_SECONDS + 1e-6), 0), complete - 1)
        return sent[i]

    words = [WordTiming(text, start, (t - t0) * 1000.0, (t - sent_at(start)) * 1000.0) for text, start, t in s.words]
    for idx, stop, t in s.end_words:
        words[idx].stop_time = stop
        words[idx].end_lag_ms = (t - sent_at(stop)) * 1000.0
    result.words = words
    if s.clip.turns:
        result.end_of_turn_signal = s.eot.signal
        result.turns = _turn_timings(s, sent, result.started_at - _EPOCH_OFFSET)


def _turn_timings(s: Stream, sent: np.ndarray, t_started: float) -> list[TurnTiming]:
    """Per-turn metrics of a conversation (docs/metrics.md): a Word belongs to the turn whose speech start is the
    last at or before the word's start_time, so words of a turn's tail that the server dates into the pause after
    it still count for that turn."""
    turns = s.clip.turns
    by_turn: list[list[tuple[str, float, float]]] = [[] for _ in turns]
    for word in s.words:
        frame = int(word[1] / P.FRAME_SECONDS + 1e-6)
        by_turn[max(bisect.bisect_right(s.turn_starts, frame) - 1, 0)].append(word)

    def sent_of(frame: int) -> float | None:
        return float(sent[frame]) if frame < len(sent) else None

    out = []
    for k, turn in enumerate(turns):
        words = by_turn[k]
        nxt = turns[k + 1].start if k + 1 < len(turns) else s.clip.n_frames
        t = TurnTiming(turn.sample, (turn.end - turn.start) * P.FRAME_SECONDS, (nxt - turn.end) * P.FRAME_SECONDS,
                       len(words), " ".join(w[0] for w in words), false_end_of_turn=s.false_eot[k])
        start, end = sent_of(turn.start), sent_of(turn.end - 1)
        if start is not None:
            t.start_s = start - t_started
        if words and start is not None:
            t.first_word_ms = (words[0][2] - start) * 1000.0
        if end is not None:
            t.end_s = end - t_started
            if words:
                t.end_ms = (words[-1][2] - end) * 1000.0
            eot, flushed = s.eot_recv[k], s.turn_flush_recv[k]
            if eot is not None:
                t.end_of_turn_ms = (eot - end) * 1000.0
            if flushed is not None:
                t.flush_ms = (flushed - end) * 1000.0
        out.append(t)
    return out


def worker_name() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"
