"""Guarding the receiver's HTTP connections: a header timeout, a header size cap, a connection cap.

uvicorn times out idle keep-alive connections, but not a client that opens a
connection and sends its request headers slowly, or never finishes them: 500
such connections stayed open for ever, and 20,000 exhausted the process's file
descriptors. The protocols here are uvicorn's own (httptools when installed,
else h11), with three guards added:

- a request whose headers are not complete within ``header_timeout_s`` of the
  connection opening (or of the previous response) is answered 408 and the
  connection closed; an idle connection is closed without an answer;
- headers larger than :data:`MAX_HEADER_BYTES` are answered 431;
- a connection beyond ``max_connections`` open at once is answered 503 with
  ``Retry-After`` and closed at once, so that file descriptors stay bounded and
  clients back off.

Requests whose headers are complete are not affected: a large body may take as
long as it takes.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["MAX_HEADER_BYTES", "ConnectionLimits", "protocol_class"]

MAX_HEADER_BYTES: Final = 64 * 1024
"""Most bytes of request line and headers one request may send."""

_REASONS: Final = {408: "Request Timeout", 431: "Request Header Fields Too Large", 503: "Service Unavailable"}


@dataclass(frozen=True, kw_only=True, slots=True)
class ConnectionLimits:
    """What one serving process allows its connections."""

    header_timeout_s: float
    """Time a request has to send its complete headers."""
    max_connections: int
    """Connections open at once; a further one is answered 503 and closed."""
    retry_after_s: int
    """``Retry-After`` of the 503 to a connection beyond the cap."""


def _raw_response(status: int, message: str, *, retry_after_s: int | None = None) -> bytes:
    body = json.dumps({"error": message}).encode()
    head = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    if retry_after_s is not None:
        head.append(f"retry-after: {retry_after_s}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


class _Guard:
    """The guards, shared by both protocol classes; state is per connection."""

    limits: ClassVar[ConnectionLimits]
    transport: asyncio.Transport
    connections: set[Any]
    loop: asyncio.AbstractEventLoop
    _header_timer: asyncio.TimerHandle | None = None
    _header_bytes: int = 0
    _header_tail: bytes = b""
    """The last bytes of the headers read so far: the blank line ending them may straddle two reads."""
    _in_headers: bool = True

    def _admit(self) -> bool:
        """Refuse a connection beyond the cap (it is already counted); otherwise start its header clock."""
        if len(self.connections) > self.limits.max_connections:
            self._answer_and_close(
                503,
                f"the receiver has {self.limits.max_connections} connections open, as many as it takes; retry later",
                retry_after_s=self.limits.retry_after_s,
            )
            return False
        self._await_headers()
        return True

    def _await_headers(self) -> None:
        self._stop_clock()
        self._in_headers = True
        self._header_bytes = 0
        self._header_tail = b""
        self._header_timer = self.loop.call_later(self.limits.header_timeout_s, self._headers_too_slow)

    def _headers_done(self) -> None:
        self._stop_clock()
        self._in_headers = False

    def _stop_clock(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _count(self, data: bytes) -> bool:
        """Count the header bytes in ``data`` (up to the blank line that ends them, which may straddle two
        reads); False, having answered 431, when they pass the cap: then the parser never sees them, so headers
        that arrive whole in one read are held to the cap too."""
        if not self._in_headers:
            return True
        seen = self._header_tail + data
        end = seen.find(b"\r\n\r\n")
        self._header_bytes += len(data) if end < 0 else max(0, end + 4 - len(self._header_tail))
        self._header_tail = seen[-3:]
        if self._header_bytes > MAX_HEADER_BYTES:
            self._answer_and_close(431, f"the request headers are over {MAX_HEADER_BYTES} bytes")
            return False
        return True

    def _check_size(self) -> None:
        """After the parser saw the data: headers still incomplete past the cap get 431."""
        if self._in_headers and self._header_bytes > MAX_HEADER_BYTES:
            self._answer_and_close(431, f"the request headers are over {MAX_HEADER_BYTES} bytes")

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self._header_bytes:
            seconds = f"{self.limits.header_timeout_s:g}"
            self._answer_and_close(408, f"the request headers did not arrive within {seconds} s")
        else:
            self.transport.close()  # an idle connection: nothing was asked, nothing to answer

    def _answer_and_close(self, status: int, message: str, *, retry_after_s: int | None = None) -> None:
        self._stop_clock()
        self._in_headers = False
        if not self.transport.is_closing():
            self.transport.write(_raw_response(status, message, retry_after_s=retry_after_s))
            self.transport.close()


class _GuardedH11(_Guard, H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._admit()

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        if not self._count(data):
            return
        super().data_received(data)
        self._check_size()

    def handle_events(self) -> None:
        super().handle_events()
        if self._in_headers and self.conn.their_state is not h11.IDLE:
            self._headers_done()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_clock()
        super().connection_lost(exc)


def _httptools_class() -> type[asyncio.Protocol] | None:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools is part of the receiver extra
        return None

    class _GuardedHttpTools(_Guard, HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._admit()

        def data_received(self, data: bytes) -> None:
            if self.transport.is_closing():
                return
            if not self._count(data):
                return
            super().data_received(data)
            self._check_size()

        def on_headers_complete(self) -> None:
            self._headers_done()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and not self.pipeline:
                self._await_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_clock()
            super().connection_lost(exc)

    return _GuardedHttpTools


def protocol_class(limits: ConnectionLimits, *, httptools: bool = True) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools when installed and wanted, else h11) with the guards set to ``limits``."""
    base = (_httptools_class() if httptools else None) or _GuardedH11
    return type(base.__name__, (base,), {"limits": limits})
