"""Serving a receiver for a test: uvicorn on a free 127.0.0.1 port, in a thread, or `flowledger serve` as a process."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Final

import httpx
import uvicorn

from flowledger.receiver._config import ReceiverConfig
from flowledger.receiver._server import uvicorn_config

__all__ = ["serve_process", "serve_receiver"]

START_TIMEOUT_S: Final = 10.0
PROCESS_START_TIMEOUT_S: Final = 60.0
PROCESS_STOP_TIMEOUT_S: Final = 30.0


def serve_receiver(config: ReceiverConfig, *, port: int = 0) -> tuple[str, uvicorn.Server, threading.Thread]:
    """Serve the receiver as ``flowledger serve`` does and wait until it answers; return its URL, server and thread.

    ``port`` 0 takes a free one; a given port brings a receiver back where a test had it down.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(config, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the receiver did not start")
        time.sleep(0.01)
    return f"http://127.0.0.1:{port}", server, thread


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_process(
    args: list[str], env: Mapping[str, str], *, port: int = 0
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``flowledger serve ARGS`` on a free 127.0.0.1 port (or ``port``, to bring a receiver back where a test had it
    down) as a child process, once it answers ``/healthz``; yields its URL and the process, and stops it with Ctrl-C
    (SIGINT) after, killing it if it does not stop."""
    port = port or _free_port()
    child = subprocess.Popen(
        [sys.executable, "-m", "flowledger", "serve", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + PROCESS_START_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert child.poll() is None, child.communicate()[1]
            assert time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.05)
        yield url, child
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
            try:
                child.communicate(timeout=PROCESS_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                child.kill()
                child.communicate()
