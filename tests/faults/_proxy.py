"""A TCP fault proxy between the SDK and the receiver: it forwards, or misbehaves in one chosen way.

It runs its own asyncio loop in a thread. The mode applies to connections
accepted after it is set; connections it holds open (half-open, black hole)
are closed when the proxy stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from enum import StrEnum
from typing import Final

__all__ = ["FaultProxy", "ProxyMode"]

_CHUNK: Final = 65536
_SLOW_CHUNK: Final = 512
_SLOW_PAUSE_S: Final = 0.02


class ProxyMode(StrEnum):
    PASS = "pass"
    """Forward both ways."""
    LATENCY = "latency"
    """Forward, each chunk held ``latency_s`` first, both ways."""
    RESET = "reset"
    """Every other connection is reset (RST) once the request has started to arrive; the rest pass."""
    HALF_OPEN = "half_open"
    """Read the request, never answer, never close."""
    SLOW_READ = "slow_read"
    """Read the request 512 bytes every 20 ms, then forward it; the answer passes."""
    BLACKHOLE = "blackhole"
    """Accept the connection and never read from it."""
    STATUS = "status"
    """Read the request and answer it with ``status`` (and ``Retry-After: 1``) without forwarding."""


class FaultProxy:
    """Listens on 127.0.0.1 (``port``) and forwards to ``target_port`` according to ``mode``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.mode = ProxyMode.PASS
        self.latency_s = 0.05
        self.status = 503
        self.connections = 0
        self._open: list[asyncio.StreamWriter] = []
        """Every connection's writer (both sides), aborted when the proxy stops."""
        self._loop = asyncio.new_event_loop()
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self.port = 0

    def start(self) -> FaultProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fault proxy did not start")
        return self

    def set(self, mode: ProxyMode, *, latency_s: float | None = None, status: int | None = None) -> None:
        self.mode = mode
        if latency_s is not None:
            self.latency_s = latency_s
        if status is not None:
            self.status = status

    def stop(self) -> None:
        if self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)

    # --- the loop ---------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stopping.wait()
        server.close()
        for writer in self._open:
            writer.transport.abort()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._open.append(writer)
        mode = self.mode
        try:
            if mode is ProxyMode.BLACKHOLE:
                return  # held open until the proxy stops
            if mode is ProxyMode.HALF_OPEN:
                await _read_request(reader)
                return
            if mode is ProxyMode.STATUS:
                await _read_request(reader)
                writer.write(
                    f"HTTP/1.1 {self.status} Fault\r\nRetry-After: 1\r\nContent-Length: 0\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                await writer.drain()
                writer.close()
                return
            if mode is ProxyMode.RESET and self.connections % 2 == 0:
                await reader.read(1)
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            await self._forward(reader, writer, mode)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            writer.transport.abort()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, mode: ProxyMode) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._open.append(up_writer)
        delay = self.latency_s if mode is ProxyMode.LATENCY else 0.0
        chunk, pause = (_SLOW_CHUNK, _SLOW_PAUSE_S) if mode is ProxyMode.SLOW_READ else (_CHUNK, 0.0)
        await asyncio.gather(
            _pipe(reader, up_writer, chunk=chunk, pause_s=pause, delay_s=delay),
            _pipe(up_reader, writer, chunk=_CHUNK, pause_s=0.0, delay_s=delay),
            return_exceptions=True,
        )


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, chunk: int, pause_s: float, delay_s: float
) -> None:
    try:
        while data := await reader.read(chunk):
            if delay_s:
                await asyncio.sleep(delay_s)
            writer.write(data)
            await writer.drain()
            if pause_s:
                await asyncio.sleep(pause_s)
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _read_request(reader: asyncio.StreamReader) -> None:
    """Read one HTTP request: its headers, then ``Content-Length`` bytes of body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
