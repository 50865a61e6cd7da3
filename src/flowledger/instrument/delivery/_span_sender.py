"""Best-effort export of OTLP spans, on a thread of its own.

The encoding follows ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`` or
``OTEL_EXPORTER_OTLP_PROTOCOL``, read when the exporter is built, as the
OTel SDK's exporters read them: ``http/protobuf`` (the specification's
default, and the only encoding some backends take), ``http/json``, or
``grpc`` (through the OTel SDK's gRPC exporter: :mod:`._grpc_spans`).

Spans are a view of the events, not the record: they are never spooled,
they get one short retry, and a slow or absent traces endpoint never holds
up event delivery (which has its own thread). What could not be exported
is counted in ``spans_dropped``.

The standard OTel SDK variables apply to these spans (:mod:`.._otel_env`):
``OTEL_RESOURCE_ATTRIBUTES`` joins their resource, ``OTEL_SDK_DISABLED=true``
turns this export off (``Settings.export_spans``), and ``OTEL_TRACES_SAMPLER``
chooses the traces whose spans are exported (a parent-based one following the
sampled flag of a run's remote parent, noted when the run started): the others
are left out here, before they are queued, and counted in neither counter (a
choice, not a loss).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from typing import Any, Final

import httpx
from opentelemetry import context as otel_context

from flowledger._apikey import api_key_problem
from flowledger._url import masked
from flowledger.instrument._config import Settings, decoded_header
from flowledger.instrument._otel_env import keeps_every_trace, trace_kept
from flowledger.instrument.delivery._failure import described
from flowledger.instrument.delivery._grpc_spans import (
    GrpcSpanExport,
    exporter_available,
    grpc_requested,
    warn_missing_exporter,
)
from flowledger.instrument.delivery._otlp_protobuf import OtlpProtocol, encode_export, protocol_from_env, rejected_spans
from flowledger.instrument.delivery._otlp_spans import export_request
from flowledger.instrument.delivery._transport import gzip_body, make_client, untraced

__all__ = ["SpanSender", "otlp_headers", "span_protocol", "span_request"]

_log = logging.getLogger("flowledger")

SPAN_ATTEMPTS: Final = 2
SPAN_RETRY_WAIT_S: Final = 0.1
SPAN_IDLE_WAIT_S: Final = 1.0


class SpanSender:
    """A bounded queue of spans and one daemon thread posting them to ``traces_url``."""

    def __init__(self, settings: Settings, *, transport: httpx.BaseTransport | None = None) -> None:
        self._settings = settings
        self._transport = transport
        self._max_items = settings.queue_max_items
        self._batch_items = settings.batch_max_items
        self.protocol = span_protocol(settings)
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._queue: deque[dict[str, Any]] = deque()
        self._busy = 0
        self._worker: threading.Thread | None = None
        self._client: httpx.Client | None = None
        self._grpc = _grpc_export(self._settings)
        self._closed = False
        self.sent = 0
        self.dropped = 0
        self._logged: set[str] = set()

    def reset_after_fork(self) -> None:
        """Start afresh in a forked child: nothing of the parent's is kept."""
        self._reset()

    def submit(self, spans: list[dict[str, Any]]) -> None:
        """Queue the spans the sampler keeps; drop (and count) what does not fit. Never blocks."""
        settings = self._settings
        sampler, ratio = settings.traces_sampler, settings.traces_sampler_ratio
        if not keeps_every_trace(sampler, ratio):
            spans = [span for span in spans if trace_kept(sampler, ratio, span["traceId"])]
        if not spans:
            return
        with self._lock:
            if self._closed:
                self.dropped += len(spans)
                return
            room = self._max_items - len(self._queue)
            take = spans[: max(room, 0)]
            self.dropped += len(spans) - len(take)
            self._queue.extend(take)
            start = self._worker is None
            if start:
                self._worker = threading.Thread(target=self._run, name="flowledger-spans", daemon=True)
        if start and self._worker is not None:
            try:
                self._worker.start()
            except RuntimeError:
                self._log_once("start", "flowledger: could not start the span exporter thread; spans are dropped.")
        if len(self._queue) >= self._batch_items:
            self._wake.set()

    def flush(self, timeout_s: float) -> bool:
        """Wait until the queued spans were posted (or dropped); return whether the queue emptied."""
        deadline = time.monotonic() + max(timeout_s, 0.0)
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                return not self._queue
        self._wake.set()
        with self._idle:
            return self._idle.wait_for(lambda: not self._queue and self._busy == 0, deadline - time.monotonic())

    def shutdown(self, timeout_s: float) -> bool:
        """Post what fits in ``timeout_s``, count the rest as dropped, stop the thread."""
        ok = self.flush(timeout_s) if timeout_s > 0 else False
        with self._lock:
            self._closed = True
            self.dropped += len(self._queue)
            ok = ok and not self._queue
            self._queue.clear()
            worker = self._worker
        self._stop.set()
        self._wake.set()
        if worker is not None and worker.is_alive():
            worker.join(timeout=0.01)
        return ok

    # --- worker --------------------------------------------------------

    def _run(self) -> None:
        token = untraced()
        try:
            while not self._stop.is_set():
                try:
                    self._step()
                except Exception as exc:
                    self._log_once(type(exc).__name__, "flowledger: span export failed: %s", described(exc))
        finally:
            client, self._client = self._client, None
            if client is not None:
                client.close()  # the worker owns its client: closed when the worker ends
            if self._grpc is not None:
                self._grpc.close()
            otel_context.detach(token)

    def _step(self) -> None:
        self._wake.clear()
        with self._lock:
            batch = [self._queue.popleft() for _ in range(min(self._batch_items, len(self._queue)))]
            if batch:
                self._busy += 1
        if not batch:
            self._wake.wait(SPAN_IDLE_WAIT_S)
            return
        accepted = 0  # what _post raised (it is logged by the worker) counts the batch as dropped
        try:
            accepted = self._post(batch)
        finally:
            with self._lock:
                self.sent += accepted
                self.dropped += len(batch) - accepted
                self._busy -= 1
                self._idle.notify_all()

    def _post(self, spans: list[dict[str, Any]]) -> int:
        if self._grpc is not None:
            if self._grpc.export(span_request(self._settings, spans)):
                return len(spans)
            self._log_once("grpc", "flowledger: could not export spans over gRPC to %s", masked(self._grpc.endpoint))
            return 0
        data, content_type = encode_export(span_request(self._settings, spans), self.protocol)
        body = gzip_body(data)
        if self._client is None:
            self._client = make_client(
                url=self._settings.traces_url,
                timeout_s=self._settings.request_timeout_s,
                transport=self._transport,
                headers=[*otlp_headers(self._settings), ("Content-Type", content_type)],
            )
        for attempt in range(SPAN_ATTEMPTS):
            try:
                response = self._client.post(self._settings.traces_url, content=body)
            except httpx.HTTPError as exc:
                self._log_once(
                    "transport",
                    "flowledger: could not export spans to %s: %s",
                    masked(self._settings.traces_url),
                    described(exc),
                )
            else:
                if response.is_success:
                    rejected = rejected_spans(response.content, response.headers.get("Content-Type", ""))
                    return len(spans) - min(rejected, len(spans))
                self._log_once(
                    f"status-{response.status_code}",
                    "flowledger: the traces endpoint %s answered %d; spans are dropped.",
                    masked(self._settings.traces_url),
                    response.status_code,
                )
                if response.status_code < 500 and response.status_code != 429:
                    return 0
            if attempt + 1 < SPAN_ATTEMPTS and self._stop.wait(SPAN_RETRY_WAIT_S):
                break
        return 0

    def _log_once(self, kind: str, message: str, *args: object) -> None:
        if kind not in self._logged:
            self._logged.add(kind)
            _log.warning(message, *args)


_PROTOCOL_VARIABLES: Final = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")


def span_request(settings: Settings, spans: list[dict[str, Any]]) -> dict[str, Any]:
    """The OTLP request of ``spans`` with the settings' resource: service name and ``OTEL_RESOURCE_ATTRIBUTES``."""
    return export_request(spans, service_name=settings.service_name, resource_attributes=settings.resource_attributes)


def span_protocol(settings: Settings, environ: Mapping[str, str] | None = None) -> OtlpProtocol:
    """The OTLP encoding for spans.

    The OTel protocol variables decide when set. Otherwise an OTLP backend
    gets the specification's default, ``http/protobuf``, and flowledger's own
    receiver gets ``http/json``: it takes both, and JSON is encoded in C,
    0.3 µs a span against about 6 µs for this SDK's pure-Python protobuf.
    """
    chosen = getattr(settings, "otlp_protocol", None)
    if isinstance(chosen, OtlpProtocol):
        return chosen
    env = os.environ if environ is None else environ
    if any(env.get(name, "").strip() for name in _PROTOCOL_VARIABLES):
        return protocol_from_env(env)
    return OtlpProtocol.HTTP_PROTOBUF if settings.otlp_traces_endpoint else OtlpProtocol.HTTP_JSON


def _grpc_export(settings: Settings) -> GrpcSpanExport | None:
    """The gRPC span export when the OTel variables ask for it and its exporter is installed (else a warning)."""
    if isinstance(getattr(settings, "otlp_protocol", None), OtlpProtocol) or not grpc_requested():
        return None
    if not exporter_available():
        warn_missing_exporter()
        return None
    return GrpcSpanExport(settings, otlp_headers(settings))


def otlp_headers(settings: Settings) -> list[tuple[str, str]]:
    """OTLP headers, percent-decoded as the OTel specification says (:func:`decoded_header`); spans bound for the
    receiver carry its API key."""
    headers = [decoded_header(key, value) for key, value in settings.otlp_headers]
    api_key = settings.api_key
    if settings.otlp_traces_endpoint is None and api_key and api_key_problem(api_key, origin="api_key") is None:
        headers.append(("Authorization", f"Bearer {api_key}"))
    return headers
