"""Serving a receiver for a test: uvicorn on a free 127.0.0.1 port, in a thread."""

from __future__ import annotations

import socket
import threading
import time
from typing import Final

import uvicorn

from flowledger.receiver._app import create_app
from flowledger.receiver._config import ReceiverConfig

__all__ = ["serve_receiver"]

START_TIMEOUT_S: Final = 10.0


def serve_receiver(config: ReceiverConfig) -> tuple[str, uvicorn.Server, threading.Thread]:
    """Serve ``create_app(config)`` and wait until it answers; return its URL, server and thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="warning", lifespan="on", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the receiver did not start")
        time.sleep(0.01)
    return f"http://127.0.0.1:{port}", server, thread
