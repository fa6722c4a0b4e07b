"""Just enough HTTP/1.1 for moshi-server's routes: request heads, fixed-length bodies, responses, the 101 upgrade.

Owning the bytes on the wire (instead of an HTTP framework) is what lets the server answer exactly like axum:
401 with an empty body before any upgrade, 4xx for a GET that is no WebSocket upgrade, 101 then raw frames.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from email.utils import formatdate
from urllib.parse import parse_qs, urlsplit

MAX_HEAD = 64 * 1024
MAX_BODY = 256 * 1024 * 1024  # an offline transcription uploads a whole audio file
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
REASONS = {101: "Switching Protocols", 200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
           405: "Method Not Allowed", 411: "Length Required", 413: "Payload Too Large",
           426: "Upgrade Required", 431: "Request Header Fields Too Large", 500: "Internal Server Error"}


class HttpError(Exception):
    def __init__(self, status: int, body: str = "") -> None:
        super().__init__(f"{status} {body}")
        self.status = status
        self.body = body


@dataclass(slots=True)
class Request:
    method: str
    target: str
    path: str
    query: dict[str, list[str]]
    version: str
    headers: dict[str, str]  # lower-case names; the first value of a repeated header, as axum's `get` returns
    content_length: int = 0
    body: bytes = field(default=b"")

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    @property
    def keep_alive(self) -> bool:
        conn = (self.headers.get("connection") or "").lower()
        return "close" not in conn if self.version == "HTTP/1.1" else "keep-alive" in conn


def parse_head(head: bytes) -> Request:
    """The request line and headers (without the final blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "bad request line")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, "bad header line")
        headers.setdefault(name.lower(), value.strip())
    if "transfer-encoding" in headers:
        raise HttpError(411, "chunked bodies are not supported; send Content-Length")
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise HttpError(400, "bad Content-Length") from None
    if length < 0:
        raise HttpError(400, "bad Content-Length")
    if length > MAX_BODY:
        raise HttpError(413, "body too large")
    split = urlsplit(target)
    return Request(method, target, split.path, parse_qs(split.query, keep_blank_values=True), version, headers,
                   length)


def response(status: int, body: bytes = b"", content_type: str | None = None, close: bool = False,
             extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}"]
    if content_type:
        lines.append(f"content-type: {content_type}")
    lines.append(f"content-length: {len(body)}")
    lines.extend(f"{k}: {v}" for k, v in extra)
    if close:
        lines.append("connection: close")
    lines.append(f"date: {formatdate(usegmt=True)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _has_token(value: str | None, token: str) -> bool:
    return value is not None and any(t.strip().lower() == token for t in value.split(","))


def upgrade_problem(req: Request) -> tuple[int, str] | None:
    """Why axum's WebSocketUpgrade extractor would reject this request (status, text), or None."""
    if req.method != "GET":
        return 405, ""
    if not _has_token(req.header("connection"), "upgrade"):
        return 400, "Connection header did not include 'upgrade'"
    if (req.header("upgrade") or "").lower() != "websocket":
        return 400, "`Upgrade` header did not include 'websocket'"
    if req.header("sec-websocket-version") != "13":
        return 400, "`Sec-WebSocket-Version` header did not include '13'"
    if not req.header("sec-websocket-key"):
        return 400, "`Sec-WebSocket-Key` header missing"
    return None


def upgrade_response(req: Request) -> bytes:
    key = (req.header("sec-websocket-key") or "").encode("latin-1")
    accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest()).decode()
    return (
        "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n"
        f"sec-websocket-accept: {accept}\r\ndate: {formatdate(usegmt=True)}\r\n\r\n"
    ).encode("latin-1")
