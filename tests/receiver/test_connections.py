"""Guarded connections over a real socket: slow headers time out, the connection cap answers 503, health answers."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import uvicorn

from flowledger.receiver._app import create_app
from flowledger.receiver._config import ReceiverConfig
from flowledger.receiver._connections import MAX_HEADER_BYTES, protocol_class
from flowledger.receiver._server import connection_limits
from tests.receiver._support import free_socket

SLOW_CONNECTIONS = 300
WAIT_S = 60.0
"""Generous bound on waiting for the server (never a measured threshold)."""
PARTIAL_REQUEST = b"POST /v1/events HTTP/1.1\r\nHost: receiver\r\nContent-Type: application/json\r\n"


@contextlib.contextmanager
def _start(config: ReceiverConfig, *, httptools: bool) -> Iterator[str]:
    sock = free_socket()
    port = sock.getsockname()[1]
    uv = uvicorn.Config(
        create_app(config),
        http=protocol_class(connection_limits(config), httptools=httptools),
        log_level="warning",
        lifespan="on",
        access_log=False,
        backlog=2048,
    )
    server = uvicorn.Server(uv)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started:
        assert thread.is_alive(), "the receiver did not start"
        assert time.monotonic() < deadline, "the receiver did not start in time"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=WAIT_S)


@pytest.fixture(params=["httptools", "h11"])
def parser(request: pytest.FixtureRequest) -> str:
    """Both of uvicorn's HTTP parsers get the same guards."""
    return str(request.param)


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=WAIT_S)


def _read_until_closed(conn: socket.socket) -> bytes:
    conn.settimeout(WAIT_S)
    chunks = []
    while True:
        try:
            chunk = conn.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_slow_headers_time_out_while_health_still_answers(tmp_path: Path, parser: str) -> None:
    """300 connections sending half their headers do not stop /healthz; each is answered 408 and closed."""
    config = ReceiverConfig(db_path=tmp_path / "f.db", sweep_interval_s=0, header_timeout_s=2.0)
    with _start(config, httptools=parser == "httptools") as url:
        slow = []
        for _ in range(SLOW_CONNECTIONS):  # each sends its half at once: its header clock starts when it connects
            slow.append(_connect(url))
            slow[-1].sendall(PARTIAL_REQUEST)
        idle = _connect(url)
        try:
            health = httpx.get(f"{url}/healthz", timeout=WAIT_S)
            assert health.status_code == 200
            answers = [_read_until_closed(conn) for conn in slow]
            assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers), {a[:40] for a in answers}
            assert b"did not arrive within 2 s" in answers[0]
            assert _read_until_closed(idle) == b""  # nothing asked, nothing answered: just closed
            assert httpx.get(f"{url}/healthz", timeout=WAIT_S).status_code == 200
        finally:
            for conn in [*slow, idle]:
                conn.close()


def test_complete_requests_on_a_kept_alive_connection_are_not_cut(tmp_path: Path, parser: str) -> None:
    """A client whose requests arrive whole keeps its connection across requests; the clock restarts per request."""
    config = ReceiverConfig(db_path=tmp_path / "f.db", sweep_interval_s=0, header_timeout_s=2.0)
    with _start(config, httptools=parser == "httptools") as url, httpx.Client(base_url=url, timeout=WAIT_S) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200


def test_oversized_headers_are_answered_431(tmp_path: Path, parser: str) -> None:
    """Headers beyond the cap are refused with 431 rather than buffered."""
    config = ReceiverConfig(db_path=tmp_path / "f.db", sweep_interval_s=0)
    with _start(config, httptools=parser == "httptools") as url:
        conn = _connect(url)
        try:
            conn.sendall(PARTIAL_REQUEST)
            filler = b"X-Filler: " + b"a" * 1000 + b"\r\n"
            try:
                for _ in range(MAX_HEADER_BYTES // len(filler) + 2):
                    conn.sendall(filler)
            except (BrokenPipeError, ConnectionResetError):
                pass
            answer = _read_until_closed(conn)
            assert answer.startswith((b"HTTP/1.1 431 ", b"HTTP/1.1 400 ")), answer[:60]
        finally:
            conn.close()


@pytest.mark.parametrize("size", [MAX_HEADER_BYTES + 1_000, 2 * MAX_HEADER_BYTES - 100])
def test_oversized_headers_sent_whole_in_one_write_are_answered_431(tmp_path: Path, parser: str, size: int) -> None:
    """Headers past the cap that arrive complete in one read were parsed and served (up to about twice the cap);
    they get 431 too, while headers just under the cap, followed by a body in the same read, are served."""
    config = ReceiverConfig(db_path=tmp_path / "f.db", sweep_interval_s=0)
    with _start(config, httptools=parser == "httptools") as url:
        conn = _connect(url)
        try:
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n\r\n")
            answer = _read_until_closed(conn)
            assert answer.startswith(b"HTTP/1.1 431 "), answer[:60]
        finally:
            conn.close()
        under = b"a" * (MAX_HEADER_BYTES - 200)
        body = b'{"events": []}'
        request = (
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"X-Big: " + under + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        conn = _connect(url)
        try:
            conn.sendall(request)
            answer = _read_until_closed(conn)
            assert not answer.startswith(b"HTTP/1.1 431 "), answer[:60]
        finally:
            conn.close()


def test_connections_beyond_the_cap_get_503_at_once_and_health_recovers(tmp_path: Path) -> None:
    """Past max_connections a new connection is answered 503 with Retry-After and closed; once they go, it answers."""
    config = ReceiverConfig(db_path=tmp_path / "f.db", sweep_interval_s=0, max_connections=20, header_timeout_s=300)
    with _start(config, httptools=True) as url:
        held = [_connect(url) for _ in range(20)]
        try:
            for conn in held:
                conn.sendall(PARTIAL_REQUEST)
            extra = [_connect(url) for _ in range(SLOW_CONNECTIONS)]
            answers = [_read_until_closed(conn) for conn in extra]
            for conn in extra:
                conn.close()
            refused = [a for a in answers if a.startswith(b"HTTP/1.1 503 ")]
            assert len(refused) == SLOW_CONNECTIONS
            assert b"retry-after: 1" in refused[0]
        finally:
            for conn in held:
                conn.close()
        deadline = time.monotonic() + WAIT_S
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=WAIT_S).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "/healthz did not answer once the held connections closed"
            time.sleep(0.05)


def test_the_cap_fits_the_open_file_limit() -> None:
    """The connection cap is lowered to leave file descriptors for the database and logs."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    limits = connection_limits(replace(ReceiverConfig(), max_connections=10**9))
    assert limits.max_connections <= soft
