"""Forwarding what the receiver gets over OTLP to an upstream OTLP/HTTP endpoint.

Off by default. With ``forward_endpoint`` set (``FLOWLEDGER_RECEIVER_FORWARD_ENDPOINT``,
a base URL like ``OTEL_EXPORTER_OTLP_ENDPOINT``), every accepted
``/v1/traces``, ``/v1/logs`` and ``/v1/metrics`` request is handed to a
bounded queue as protobuf (a JSON request is re-encoded: every OTLP/HTTP
server accepts protobuf, not every one accepts JSON); one task posts the
bodies to ``<endpoint>/v1/<signal>``, gzipped (the signal path joined onto the endpoint's
path, its query string kept after it). The
receiver never waits for the upstream: when the queue is full the body is
dropped and counted, a failed post is retried a few times with backoff
(honouring ``Retry-After``) and then counted as failed. The counts are
served at ``GET /api/forwarding``.

Nothing this module logs may carry a secret: the endpoint can hold a password
or a token (shown through :func:`~flowledger._url.masked`), and the extra headers hold an
upstream's API key. An exception's text is shown only for the transport
failures whose text comes from the network (refused, reset, timed out); any
other is shown by its type alone, because its text can quote a request
header (``UnicodeEncodeError`` and h11's ``Illegal header value`` do).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import gzip
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

from flowledger._url import join_path, masked
from flowledger._version import __version__
from flowledger.receiver._config import FORWARD_HEADER_ENCODING
from flowledger.receiver.otlp._decode import OtlpSignal

__all__ = ["ForwardResult", "ForwardStats", "Forwarder"]

_log = logging.getLogger("flowledger.receiver")

FORWARD_ATTEMPTS: Final = 3
FORWARD_BACKOFF_S: Final = 0.2
FORWARD_MAX_BACKOFF_S: Final = 5.0
FORWARD_GZIP_LEVEL: Final = 5
_RETRYABLE: Final = frozenset({429, 502, 503, 504})
USER_AGENT: Final = f"flowledger-receiver/{__version__}"


class ForwardResult(enum.Enum):
    """What became of one forwarded body."""

    SENT = "sent"
    FAILED = "failed"
    """The upstream refused it or could not be reached after every attempt."""


@dataclass(slots=True)
class ForwardStats:
    """Counters of the forwarder (requests, and the spans/records/points they held)."""

    endpoint: str
    queued: int = 0
    """Bodies waiting in the queue now."""
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    """Bodies refused because the queue was full."""
    retried: int = 0
    items_sent: int = 0
    items_failed: int = 0
    items_dropped: int = 0

    def as_json(self) -> dict[str, Any]:
        """A JSON-safe copy."""
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class _Job:
    signal: OtlpSignal
    body: bytes
    content_type: str
    items: int


class Forwarder:
    """A bounded queue of OTLP bodies and one task posting them upstream."""

    def __init__(
        self,
        endpoint: str,
        *,
        max_requests: int,
        timeout_s: float,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.stats = ForwardStats(endpoint=masked(self.endpoint))
        self._urls = {signal: join_path(endpoint, signal.value) for signal in OtlpSignal}
        self._timeout_s = timeout_s
        self._headers = {"User-Agent": USER_AGENT, "Content-Encoding": "gzip", **(headers or {})}
        self._transport = transport
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=max(1, max_requests))
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    def url(self, signal: OtlpSignal) -> str:
        """Where bodies of ``signal`` go: ``<endpoint>/v1/<signal>``, the endpoint's query string after the path."""
        return self._urls[signal]

    def offer(self, signal: OtlpSignal, body: bytes, content_type: str, *, items: int) -> bool:
        """Queue one body without waiting; return False (and count a drop) when the queue is full."""
        if self._closed:
            self._count_drop(items)
            return False
        try:
            self._queue.put_nowait(_Job(signal, body, content_type, items))
        except asyncio.QueueFull:
            self._count_drop(items)
            return False
        self._idle.clear()
        self.stats.queued = self._queue.qsize()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="flowledger-forwarder")
        return True

    def _count_drop(self, items: int) -> None:
        self.stats.dropped += 1
        self.stats.items_dropped += items

    async def flush(self, timeout_s: float) -> bool:
        """Wait until the queue is empty and nothing is in flight; return whether it emptied in time."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self, timeout_s: float) -> None:
        """Post what fits in ``timeout_s``, count the rest as dropped, end the task; idempotent."""
        if self._closed:
            return
        self._closed = True
        await self.flush(timeout_s)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while not self._queue.empty():
            self._count_drop(self._queue.get_nowait().items)
        self.stats.queued = 0

    async def _run(self) -> None:
        client = httpx.AsyncClient(transport=self._transport, timeout=httpx.Timeout(self._timeout_s))
        try:
            while True:
                job = await self._queue.get()
                try:
                    result = await self._post(client, job)
                except asyncio.CancelledError:  # stopped (or the loop closed) while this body was in flight
                    self._count_drop(job.items)
                    while not self._queue.empty():
                        self._count_drop(self._queue.get_nowait().items)
                    raise
                except Exception as exc:  # never let one body end forwarding
                    problem = _shown_problem(exc, self.url(job.signal), self.endpoint)
                    _log.warning("forwarding to %s failed: %s", masked(self.endpoint), problem)
                    result = ForwardResult.FAILED
                if result is ForwardResult.SENT:
                    self.stats.sent += 1
                    self.stats.items_sent += job.items
                else:
                    self.stats.failed += 1
                    self.stats.items_failed += job.items
                self.stats.queued = self._queue.qsize()
                if self._queue.empty():
                    self._idle.set()
        finally:
            self._idle.set()
            await client.aclose()

    async def _post(self, client: httpx.AsyncClient, job: _Job) -> ForwardResult:
        body = gzip.compress(job.body, compresslevel=FORWARD_GZIP_LEVEL)
        # Header values go out as the Latin-1 bytes HTTP carries (httpx would encode text as ASCII and refuse an
        # "é"); parse_forward_headers refused at start what Latin-1 cannot hold. A value set in code that it cannot
        # hold raises here, and the body is counted as failed and logged without the value (_shown_problem).
        headers = httpx.Headers({**self._headers, "Content-Type": job.content_type}, encoding=FORWARD_HEADER_ENCODING)
        wait_s = FORWARD_BACKOFF_S
        for attempt in range(FORWARD_ATTEMPTS):
            retry_after: float | None = None
            try:
                response = await client.post(self.url(job.signal), content=body, headers=headers)
            except httpx.HTTPError as exc:
                problem = _shown_problem(exc, self.url(job.signal), self.endpoint)
            else:
                if response.is_success:
                    return ForwardResult.SENT
                problem = f"HTTP {response.status_code}"
                if response.status_code not in _RETRYABLE:
                    _log.warning("the OTLP upstream %s refused a body: %s", masked(self.url(job.signal)), problem)
                    return ForwardResult.FAILED
                retry_after = _retry_after_s(response.headers.get("retry-after"))
            if attempt + 1 == FORWARD_ATTEMPTS:
                _log.warning(
                    "forwarding to %s failed %d times: %s", masked(self.url(job.signal)), FORWARD_ATTEMPTS, problem
                )
                break
            self.stats.retried += 1
            delay = retry_after if retry_after is not None else wait_s * (0.5 + random.random())
            await asyncio.sleep(min(delay, FORWARD_MAX_BACKOFF_S))
            wait_s = min(wait_s * 2, FORWARD_MAX_BACKOFF_S)
        return ForwardResult.FAILED


_SHOWN_FAILURES: Final = (httpx.TimeoutException, httpx.NetworkError)
"""Transport failures whose text comes from the network or the OS ("connection refused", "timed out"), never
from the request: their text is shown. Every other exception is shown by its type name only."""


def _shown_problem(exc: BaseException, *urls: str) -> str:
    """What to log of ``exc``: its type, with its text only when that cannot quote a request header; each of
    ``urls`` in that text shown as :func:`~flowledger._url.masked` shows it (no password, no query value)."""
    if not isinstance(exc, _SHOWN_FAILURES):
        return type(exc).__name__
    text = repr(exc)
    for url in urls:
        text = text.replace(url, masked(url))
    return text


def _retry_after_s(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds <= FORWARD_MAX_BACKOFF_S else FORWARD_MAX_BACKOFF_S if seconds > 0 else None
