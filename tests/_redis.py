"""A throwaway Redis server for the Celery tests (adapter and executor): Debian's redis-server on a free port.

``python3 tasks.py test`` installs redis-server with apt when it runs as root
and the binary is missing; the tests that need it skip with that reason
otherwise. The server keeps nothing on disk and is stopped when the block ends.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

__all__ = ["REDIS_MISSING", "free_port", "redis_binary", "redis_server"]

START_TIMEOUT_S: Final = 60.0
REDIS_MISSING: Final = "redis-server is not installed (python3 tasks.py test installs it with apt as root)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_binary() -> str | None:
    """Debian's redis-server, if installed."""
    return shutil.which("redis-server")


@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """A redis-server on a free 127.0.0.1 port, no persistence; yields its URL."""
    binary = redis_binary()
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)
