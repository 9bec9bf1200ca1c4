"""Limits on what a request may be, checked before any route sees it, on every app of the shop
(the gateway, each service, the monolith), and the gateway's cap on calls in flight.

- The request target (path and query) is at most `max_uri_bytes`; a longer one gets 414.
- The path is checked and normalised segment by segment: each is percent-decoded once, and one
  that is `.` or `..` (raw or encoded, any case), that holds a slash or backslash once decoded
  (`%2f`, `%5c`, `\\`), a control character, or bytes that are not UTF-8 gets 400. Empty
  segments (`//`, a trailing `/`) are dropped. Routes then see the decoded segments, and the
  gateway forwards them encoded again, so a path cannot change meaning on its way through
  (no `/api/inventory/%2e%2e/%2e%2e/admin/...` reaching an admin endpoint).
- The body is at most `max_body_bytes`: a larger Content-Length is refused before a byte is
  read (413), and a body without one (chunked) is counted as it arrives and refused as soon
  as it passes the limit. Bodies are small JSON documents here, so the limit is small.

Pure ASGI middleware rather than @app.middleware: it must answer before the body is read.
"""

from __future__ import annotations

import json
import threading
from urllib.parse import quote, unquote_to_bytes

from .errors import ShopError


def path_segments(raw_path: str) -> list[str]:
    """The decoded, non-empty segments of a raw (still percent-encoded) path, or ShopError 400.
    `raw_path` holds the request's bytes one per character (latin-1), as servers pass it."""
    segments = []
    for raw in raw_path.split("/"):
        try:
            segment = unquote_to_bytes(raw.encode("latin-1")).decode("utf-8")
        except UnicodeDecodeError:
            raise ShopError(400, f"path segment {raw!r} is not UTF-8 once percent-decoded")
        problem = segment_problem(segment)
        if problem:
            raise ShopError(400, f"path segment {raw!r} is refused: {problem}")
        if segment:
            segments.append(segment)
    return segments


def segment_problem(segment: str) -> str | None:
    """Why a decoded segment cannot be part of a path, or None when it can."""
    if segment in (".", ".."):
        return "dot segments ('.', '..') are not allowed"
    if "/" in segment or "\\" in segment:
        return "encoded slashes (%2f), backslashes and %5c are not allowed"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in segment):
        return "control characters are not allowed"
    return None


def encoded_path(segments: list[str]) -> str:
    """The path to send on: every segment percent-encoded, so none can split or climb."""
    return "/" + "/".join(quote(segment, safe="") for segment in segments)


class RequestLimits:
    """ASGI middleware: the target length and path checks, and the body size limit."""

    def __init__(self, app, max_uri_bytes: int, max_body_bytes: int) -> None:
        self.app, self.max_uri_bytes, self.max_body_bytes = app, max_uri_bytes, max_body_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        try:
            self._check_target(scope)
            self._check_declared_length(scope)
            receive = await self._read_body(receive)
        except ShopError as err:
            return await _answer(send, err)
        except _ClientGone:
            return None
        await self.app(scope, receive, send)

    def _check_target(self, scope) -> None:
        raw_path = scope.get("raw_path") or scope["path"].encode()
        length = len(raw_path) + len(scope.get("query_string", b""))
        if length > self.max_uri_bytes:
            raise ShopError(414, f"the request target is {length} bytes long; at most {self.max_uri_bytes} are accepted")
        segments = path_segments(raw_path.decode("latin-1"))
        scope["path"] = "/" + "/".join(segments)
        scope["raw_path"] = encoded_path(segments).encode()

    def _check_declared_length(self, scope) -> None:
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is None:
            return
        if not declared.isdigit():
            raise ShopError(400, "Content-Length must be a number of bytes")
        if int(declared) > self.max_body_bytes:
            raise ShopError(413, f"the request body is {int(declared)} bytes; at most {self.max_body_bytes} are accepted")

    async def _read_body(self, receive):
        """Read the whole body, counting; hand the app a receive that replays it."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone()
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body_bytes:
                raise ShopError(413, f"the request body is larger than {self.max_body_bytes} bytes, the most accepted")
            more = message.get("more_body", False)
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replaying_receive():
            return replay.pop() if replay else await receive()

        return replaying_receive


class _ClientGone(Exception):
    pass


async def _answer(send, err: ShopError) -> None:
    body = json.dumps(err.to_json()).encode()
    # The rest of a refused body is not read: close the connection instead of reading it.
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class InFlightCap:
    """At most `limit` calls in flight to one service; one more is refused at once (503).

    Always on at the gateway: its sync handlers share one pool of worker threads, so without
    a cap a hung service would hold every thread and every route would stop answering. With
    caps below the pool's size the other services keep their threads.
    """

    def __init__(self, service: str, limit: int) -> None:
        self.service, self.limit = service, limit
        self._slots = threading.BoundedSemaphore(limit)

    def __enter__(self) -> "InFlightCap":
        if not self._slots.acquire(blocking=False):
            raise ShopError(503, f"{self.service} has {self.limit} calls in flight already, the most the gateway "
                                 "allows; try again shortly", service=self.service, protection="in-flight cap")
        return self

    def __exit__(self, *exc) -> None:
        self._slots.release()
