"""The SDK's own HTTP client: short timeouts, gzip bodies, never traced.

The sender's threads call :func:`untraced` once when they start: it
attaches an OpenTelemetry context carrying the suppress-instrumentation
keys, the way the OTel SDK's own span processors do, so that an
auto-instrumented httpx (or anything else) never records the SDK's
deliveries as spans of the application.

httpx logs every request on its ``httpx`` logger at INFO, URL included, and
an endpoint may carry credentials (``http://user:password@host``, a token
in its query): an application calling ``logging.basicConfig(level=INFO)``
printed them. :func:`untraced` also marks the thread as one of the SDK's,
and a filter on that logger shows the URL of such a thread's requests
masked (:func:`~flowledger._url.masked`). An http node's request is sent
from the workflow's own thread or task, so it is marked with
:func:`masked_requests` instead: a context variable, which follows the
request into the task (and the threads) it runs in, where a thread-local
would not. Only those: the application's own httpx requests are logged as
httpx logs them.

Everything the worker threads need to build a client and make a request is
imported here, at import time, on the thread that imports this module:
httpx imports ``httpcore`` lazily when the first transport is built, and the
socket layer imports the ``idna`` codec on the first connection. Were those
imports left to a worker thread, a process forked while one is half done
would find a partially initialised module in its child and never build a
client there.
"""

from __future__ import annotations

import email.utils
import encodings.idna  # noqa: F401 - the codec socket.getaddrinfo loads on first use
import gzip
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import Final

import httpcore  # noqa: F401 - httpx.HTTPTransport imports it lazily, see the module docstring
import httpx
from opentelemetry import context as otel_context

from flowledger._url import masked
from flowledger._version import __version__

__all__ = [
    "BODY_GZIP_LEVEL",
    "USER_AGENT",
    "gzip_body",
    "make_client",
    "masked_requests",
    "parse_retry_after",
    "untraced",
]

USER_AGENT: Final = f"flowledger/{__version__}"
BODY_GZIP_LEVEL: Final = 1
"""gzip level of request bodies: the fastest, about 2.5x cheaper than 5 for ~15% more bytes."""
RETRY_AFTER_MAX_S: Final = 30.0
"""A receiver's ``Retry-After`` is honoured up to this many seconds."""


_sdk_thread: Final = threading.local()
"""``sending`` is true in the SDK's own sending threads (set by :func:`untraced`)."""
_sdk_request: Final[ContextVar[bool]] = ContextVar("flowledger_sdk_request", default=False)
"""True while an http node's request is sent (set by :func:`masked_requests`)."""


class _SdkRequestsMasked(logging.Filter):
    """On the ``httpx`` logger: the URL of a request made by one of the SDK's threads, or by an http node, is shown
    masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        sdk = getattr(_sdk_thread, "sending", False) or _sdk_request.get()
        if sdk and isinstance(record.args, tuple):
            record.args = tuple(masked(str(arg)) if isinstance(arg, httpx.URL) else arg for arg in record.args)
        return True  # the line itself stays: it says the SDK delivered


_HTTPX_FILTER: Final = _SdkRequestsMasked()
logging.getLogger("httpx").addFilter(_HTTPX_FILTER)  # records of the application's threads pass unchanged


def untraced() -> Token[otel_context.Context]:
    """Mark this thread as one of the SDK's sending threads (its requests are logged masked) and attach a context
    that turns OTel instrumentation off in it; return the context's token."""
    _sdk_thread.sending = True
    ctx = otel_context.get_current()
    for name in ("_SUPPRESS_INSTRUMENTATION_KEY", "_SUPPRESS_HTTP_INSTRUMENTATION_KEY"):
        key = getattr(otel_context, name, None)
        if isinstance(key, str):
            ctx = otel_context.set_value(key, True, ctx)
    return otel_context.attach(ctx)


@contextmanager
def masked_requests() -> Iterator[None]:
    """Within the block (and the tasks and context-copying threads it starts), httpx logs requests with their URL
    masked: for an http node, whose URL is the definition's and may hold a password or token."""
    token = _sdk_request.set(True)
    try:
        yield
    finally:
        _sdk_request.reset(token)


CLIENT_BUILD_LOCK: Final = threading.RLock()
"""Held while a client is made: httpx makes an SSL context, and a child forked while another thread is inside
OpenSSL's context set-up inherits its locks held by a thread it does not have (its own first client would wait for
ever). A fork waits for it (``_pipeline._before_fork``); re-entrant, as a signal handler may make a client."""


def make_client(
    *,
    url: str,
    timeout_s: float,
    transport: httpx.BaseTransport | None,
    headers: Iterable[tuple[str, str]] = (),
) -> httpx.Client:
    """An httpx client for ``url`` with one short timeout for connect, write, read and pool."""
    all_headers = {"User-Agent": USER_AGENT, "Content-Type": "application/json", "Content-Encoding": "gzip"}
    all_headers.update(dict(headers))
    with CLIENT_BUILD_LOCK:
        if transport is None and url.lower().startswith("http://"):
            # A plain-HTTP endpoint never negotiates TLS (redirects are not followed), so skip
            # loading the CA bundle: that alone costs about 50 ms, which a short process pays at exit.
            transport = httpx.HTTPTransport(verify=False)
        return httpx.Client(transport=transport, timeout=httpx.Timeout(timeout_s), headers=all_headers)


def gzip_body(data: bytes) -> bytes:
    """Compress a request body."""
    return gzip.compress(data, compresslevel=BODY_GZIP_LEVEL)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), capped."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_S)
