"""Running the receiver with uvicorn (what ``flowledger serve`` does).

The listening socket is bound before anything is printed or started
(:func:`bind_socket`), so a busy port is one error and nothing else; the
connections are guarded by :mod:`flowledger.receiver._connections`.
"""

from __future__ import annotations

import gc
import logging
import math
import resource
import socket
import sys
from typing import Final

import uvicorn

from flowledger._exceptions import StoreError
from flowledger.receiver._app import create_app
from flowledger.receiver._config import DEFAULT_SWITCH_INTERVAL_S, ReceiverConfig
from flowledger.receiver._connections import ConnectionLimits, protocol_class
from flowledger.receiver._interrupt import StartInterrupt

__all__ = [
    "FD_RESERVE",
    "GC_GEN0_THRESHOLD",
    "HTTP_CLIENT_LOGGERS",
    "bind_socket",
    "connection_limits",
    "serve",
    "uvicorn_config",
]

GC_GEN0_THRESHOLD: Final = 100_000
"""Container allocations between young-generation collections in a serving process (Python's default: 700).

Decoding a batch of 1,000 events allocates 10,000 to 15,000 dicts, lists
and tuples that all stay alive until the batch is committed. A collection
scans every young object still alive and frees nothing of them: with the
default every batch paid for several such collections (about 5 µs of CPU
per event), and with a threshold below a batch's allocations (10,000 until
this was measured again) every object of every batch was still scanned once
(about 7% of the receiver's CPU under load). At 100,000 the objects of the
batches already answered are gone by the time of a collection, which scans
only the few batches in flight. With the modules loaded at start-up frozen
(``gc.freeze``) collection costs next to nothing; cycles are still
collected, after at most this many allocations.
"""
FD_RESERVE: Final = 64
"""File descriptors kept free for the database, logs and the listening socket when capping connections."""
LISTEN_BACKLOG: Final = 2048
HTTP_CLIENT_LOGGERS: Final = ("httpx", "httpcore")
"""The HTTP client's loggers, held at WARNING or above in ``flowledger serve`` whatever ``--log-level`` says.

The receiver calls out with httpx (forwarding OTLP, posting checkpoints, resuming runs) to URLs that may hold a
password or a token (``http://user:pw@collector/?token=t``) with headers that hold an upstream's API key. httpx
logs every request's full URL at INFO, once per forwarded body, and httpcore's DEBUG lines quote the exceptions
of a failed send, whose text can hold a header value. Masking URLs in those lines would still leave the headers
and a log line per forwarded request; the receiver's own warnings already name every failed call, with its URL
masked (``shown_url``). Neither logger says anything at WARNING or above.
"""


def _tune_gc() -> None:
    gc.collect()
    gc.freeze()  # what start-up loaded lives as long as the process: never scan it again
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, older, oldest)


def _tune_switching(interval_s: float = DEFAULT_SWITCH_INTERVAL_S) -> None:
    sys.setswitchinterval(interval_s)


def bind_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` (port 0: any free one); OSError (address in use, ...) otherwise."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def connection_limits(config: ReceiverConfig) -> ConnectionLimits:
    """The configured connection limits, the cap lowered to fit the process's open-file limit."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = config.max_connections
    if soft != resource.RLIM_INFINITY:
        cap = max(1, min(cap, soft - FD_RESERVE))
    return ConnectionLimits(
        header_timeout_s=config.header_timeout_s, max_connections=cap, retry_after_s=config.retry_after_s
    )


def uvicorn_config(config: ReceiverConfig, *, log_level: str = "info") -> uvicorn.Config:
    """The uvicorn settings of a receiver: guarded connections, no access log, bounded graceful shutdown."""
    return uvicorn.Config(
        create_app(config),
        http=protocol_class(connection_limits(config)),
        log_level=log_level,
        access_log=False,
        lifespan="on",
        backlog=LISTEN_BACKLOG,
        timeout_graceful_shutdown=math.ceil(config.shutdown_s),
    )


def serve(
    config: ReceiverConfig, *, sock: socket.socket, log_level: str = "info", interrupt: StartInterrupt | None = None
) -> None:
    """Serve on the bound ``sock`` until interrupted. Access logs stay off: they would only repeat what metrics count.

    A Ctrl-C that ``interrupt`` saw before uvicorn takes SIGINT over stops it before it serves.

    uvicorn picks uvloop (the receiver extra) when it is installed, and the guarded protocol uses
    httptools when it is: on ingest they take about a tenth off the event-loop thread's CPU per event.
    """
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet = max(logging.WARNING, logging.getLogger().getEffectiveLevel())
    for name in HTTP_CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    server = uvicorn.Server(uvicorn_config(config, log_level=log_level))
    _tune_gc()
    _tune_switching(config.switch_interval_s)
    startup = _StartupFailure()
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addFilter(startup)
    try:
        if interrupt is not None:
            interrupt.hand_over(server.handle_exit)  # one from now on stops the server once started, never its set-up
            interrupt.check()  # one before it stops here
        server.run(sockets=[sock])
    except SystemExit:  # uvicorn's own exit (3) when startup failed: the error below says why, with 1
        if server.started:
            raise
    finally:
        uvicorn_log.removeFilter(startup)
    if not server.started:
        raise StoreError(f"the receiver could not start: {startup.reason or 'see the log above'}")


class _StartupFailure(logging.Filter):
    """Keeps a failed startup's traceback out of the log, remembering its last line (the error) instead."""

    def __init__(self) -> None:
        super().__init__()
        self.reason: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith("Traceback (most recent call last)"):
            return True
        last = message.strip().splitlines()[-1]
        self.reason = last.split(": ", 1)[-1] if ": " in last else last
        return False
