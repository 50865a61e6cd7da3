"""A real HTTP server on 127.0.0.1 that gives every request the same answer and records what it was asked.

For tests of where the SDK sends a request (the path and query it builds from an endpoint) and of
what it says when the answer is not a success: the request line and the ``Authorization`` header of
each request are kept, so a test sees exactly what went over the socket.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FixedAnswer", "Seen", "fixed_answer"]


@dataclass(frozen=True, slots=True)
class Seen:
    """One request as it arrived: method, target (path and query, as sent) and Authorization header."""

    method: str
    target: str
    authorization: str | None


class FixedAnswer:
    """The server: ``url`` to reach it, ``seen`` the requests so far (in arrival order)."""

    def __init__(self, status: int) -> None:
        self.status = status
        self._seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def seen(self) -> list[Seen]:
        with self._lock:
            return list(self._seen)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with server._lock:
                    server._seen.append(Seen(self.command, self.path, self.headers.get("Authorization")))
                data = json.dumps({"error": "scripted"}).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _answer
            do_POST = _answer

        return Handler


@contextmanager
def fixed_answer(status: int) -> Iterator[FixedAnswer]:
    """A started :class:`FixedAnswer` answering ``status``, shut down afterwards."""
    server = FixedAnswer(status)
    server._thread.start()
    try:
        yield server
    finally:
        server._server.shutdown()
        server._server.server_close()
