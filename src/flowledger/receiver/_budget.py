"""A budget of request-body bytes in flight: how much the receiver parses at once.

A decoded batch takes about ten to fifteen times its JSON size in memory until
it is committed, and a process keeps memory it once took: 16 concurrent 5 MiB
batches took a receiver to 1.1 GB RSS, and it stayed there. The
:class:`BodyBudgetMiddleware` holds, for every request to an ingest route, a
reservation of the bytes its body will occupy once inflated, from the moment
it is admitted until its answer is sent. When the budget cannot cover a
request it is answered 503 with ``Retry-After`` at once, before its body is
read; the SDK and OTLP exporters retry such answers.

The reservation is the declared ``Content-Length`` (gzip bodies:
:data:`GZIP_RESERVE_RATIO` times it, at most ``max_inflated_bytes``; no
length: the largest body allowed). A request larger than the whole budget is
admitted when nothing else is in flight, so every body the limits allow can
get through.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from typing import Final

from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from flowledger.receiver._config import IngestLimits
from flowledger.receiver._metrics import Metrics

__all__ = ["BUDGETED_PATHS", "GZIP_RESERVE_RATIO", "BodyBudget", "BodyBudgetMiddleware"]

GZIP_RESERVE_RATIO: Final = 10
"""Inflated bytes reserved per compressed byte of a gzip body (JSON batches compress about this well)."""
BUDGETED_PATHS: Final = frozenset({"/v1/events", "/v1/traces", "/v1/logs", "/v1/metrics"})
"""The routes whose bodies are parsed."""
_OTLP_UNAVAILABLE: Final = 14
"""``google.rpc.Code.UNAVAILABLE``: what an OTLP client treats as retryable."""
_GZIP: Final = frozenset({"gzip", "x-gzip"})
TRIM_AFTER_BYTES: Final = 64 * 1024 * 1024
"""After this many body bytes, once nothing is in flight, free memory is handed back to the system."""


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim with
        return None
    return trim


_TRIM: Final = _malloc_trim()


def release_free_memory() -> None:
    """Give the C allocator's free memory back to the system (glibc ``malloc_trim``), so RSS falls after a burst."""
    if _TRIM is not None:
        _TRIM(0)


class BodyBudget:
    """Bytes of request bodies being read and parsed at once, up to ``capacity_bytes``.

    Used from the event loop's thread only, so a counter is all it needs.
    """

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = max(1, capacity_bytes)
        self.in_flight_bytes = 0
        self.taken_since_trim = 0

    def try_take(self, size: int) -> int | None:
        """Reserve ``size`` bytes (at most the capacity); the amount taken, or None when it does not fit now."""
        size = min(max(0, size), self.capacity_bytes)
        if self.in_flight_bytes and self.in_flight_bytes + size > self.capacity_bytes:
            return None
        self.in_flight_bytes += size
        self.taken_since_trim += size
        return size

    def give_back(self, size: int) -> None:
        """Return a reservation."""
        self.in_flight_bytes -= size

    def take_trim_due(self) -> bool:
        """Whether :data:`TRIM_AFTER_BYTES` were taken since the last time this answered True."""
        if self.taken_since_trim < TRIM_AFTER_BYTES:
            return False
        self.taken_since_trim = 0
        return True


def reservation_bytes(headers: Headers, limits: IngestLimits) -> int:
    """The bytes a request's body will occupy once inflated (0: a body the routes refuse unread, or none)."""
    encoding = headers.get("content-encoding", "identity").strip().lower()
    gzip = encoding in _GZIP
    raw_length = headers.get("content-length")
    if raw_length is None:
        return limits.max_inflated_bytes if gzip else limits.max_body_bytes
    try:
        declared = int(raw_length)
    except ValueError:
        return 0  # answered 400 unread
    if declared <= 0 or declared > limits.max_body_bytes:
        return 0  # nothing to parse, or answered 413 unread
    return min(limits.max_inflated_bytes, declared * GZIP_RESERVE_RATIO) if gzip else declared


def _busy_response(path: str, headers: Headers, message: str, retry_after_s: int) -> Response:
    retry = {"Retry-After": str(retry_after_s)}
    if path == "/v1/events":
        return JSONResponse({"error": message}, status_code=503, headers=retry)
    # OTLP: a google.rpc.Status in the request's own content type
    if "protobuf" in headers.get("content-type", ""):
        text = message.encode()
        body = bytes([0x08, _OTLP_UNAVAILABLE, 0x12]) + _varint(len(text)) + text
        return Response(body, status_code=503, headers=retry, media_type="application/x-protobuf")
    return JSONResponse({"code": _OTLP_UNAVAILABLE, "message": message}, status_code=503, headers=retry)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class BodyBudgetMiddleware:
    """ASGI middleware: admit an ingest request only when the budget covers its body; 503 otherwise."""

    def __init__(
        self, app: ASGIApp, *, budget: BodyBudget, limits: IngestLimits, metrics: Metrics, retry_after_s: int
    ) -> None:
        self.app = app
        self.budget = budget
        self.limits = limits
        self.metrics = metrics
        self.retry_after_s = retry_after_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in BUDGETED_PATHS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        wanted = reservation_bytes(headers, self.limits)
        taken = self.budget.try_take(wanted) if wanted else 0
        if taken is None:
            self.metrics.refused(503)
            message = (
                f"the receiver is parsing {self.budget.in_flight_bytes} bytes of other requests, "
                f"as much as it takes at once; retry in {self.retry_after_s} s"
            )
            response = _busy_response(scope["path"], headers, message, self.retry_after_s)
            await response(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.budget.give_back(taken)
            if self.budget.in_flight_bytes == 0 and self.budget.take_trim_due():
                release_free_memory()
