"""Serving a receiver for a test: uvicorn on a free 127.0.0.1 port, in a thread."""

from __future__ import annotations

import socket
import threading
import time
from typing import Final

import uvicorn

from flowledger.receiver._config import ReceiverConfig
from flowledger.receiver._server import uvicorn_config

__all__ = ["serve_receiver"]

START_TIMEOUT_S: Final = 10.0


def serve_receiver(config: ReceiverConfig) -> tuple[str, uvicorn.Server, threading.Thread]:
    """Serve the receiver as ``flowledger serve`` does and wait until it answers; return its URL, server and thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
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
