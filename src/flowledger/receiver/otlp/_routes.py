"""OTLP/HTTP ingest (``/v1/traces``, ``/v1/logs``, ``/v1/metrics``) and ``GET /api/traces/{trace_id}``.

Any OpenTelemetry SDK or Collector pointed at the receiver (port 4318 by
default) can export to it, in protobuf or JSON, gzipped or not. Spans are
validated and stored once per ``(trace_id, span_id, project)`` through the single
writer; the answer is the OTLP ``ExportTraceServiceResponse`` in the
request's own content type, with ``partial_success`` when some spans were
rejected. Logs and metrics are not stored: they get a well-formed OTLP
success answer (and are forwarded when forwarding is on), so an exporter
configured for all signals keeps working. Client mistakes are 4xx with a
``google.rpc.Status`` body: 400 for a body that is not OTLP, 413 for one too
large, 415 for another content type; a busy store is 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowledger._exceptions import BodyError, OtlpBodyError, StoreError
from flowledger._wire import now_ts
from flowledger.receiver._body import read_body
from flowledger.receiver._state import ReceiverState, error_response, project_of, receiver_of
from flowledger.receiver._trace_url import trace_url
from flowledger.receiver.otlp._decode import (
    OtlpFormat,
    OtlpSignal,
    decode_request,
    encode_error,
    encode_response,
    format_of,
)
from flowledger.receiver.otlp._forward import Forwarder
from flowledger.receiver.otlp._spans import is_trace_id, spans_from_request, trace_json

__all__ = ["ROUTES", "OtlpState", "otlp_state"]

BODY_READ_TIMEOUT_S: Final = 30.0
"""A client that takes longer to send its body is answered 408."""
FORWARD_STOP_S: Final = 5.0


@dataclass(slots=True)
class SpanStats:
    """What ``/v1/traces`` did since the receiver started."""

    requests: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    refused_requests: int = 0
    """Requests answered 4xx or 5xx."""

    def add(
        self, *, requests: int = 0, accepted: int = 0, duplicates: int = 0, rejected: int = 0, refused: int = 0
    ) -> None:
        """Add to the counters."""
        self.requests += requests
        self.accepted += accepted
        self.duplicates += duplicates
        self.rejected += rejected
        self.refused_requests += refused

    def as_json(self) -> dict[str, int]:
        """The ``spans`` object of ``/api/otlp/stats``."""
        return {
            "requests": self.requests,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "refused_requests": self.refused_requests,
        }


@dataclass(slots=True)
class OtlpState:
    """The OTLP side of one receiver app: counters (all, and per API key project) and the (optional) forwarder."""

    spans: SpanStats = field(default_factory=SpanStats)
    by_project: dict[str, SpanStats] = field(default_factory=dict)
    forwarder: Forwarder | None = None

    def count(self, project: str | None, **deltas: int) -> None:
        """Add to the receiver's span counters and, with API keys on, to the project's."""
        self.spans.add(**deltas)
        if project is not None:
            self.by_project.setdefault(project, SpanStats()).add(**deltas)


def otlp_state(request: Request) -> OtlpState:
    """The OTLP state of the app serving ``request``, made on first use (with the forwarder, if configured)."""
    state: OtlpState | None = getattr(request.app.state, "otlp", None)
    if state is None:
        config = receiver_of(request).config
        forwarder = None
        if config.forward_endpoint:
            forwarder = Forwarder(
                config.forward_endpoint,
                max_requests=config.forward_queue_max_requests,
                timeout_s=config.forward_timeout_s,
                headers=dict(config.forward_headers),
            )
        state = OtlpState(forwarder=forwarder)
        request.app.state.otlp = state
    return state


def _answer(body: bytes, fmt: OtlpFormat, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type=fmt.value, headers=headers)


def _items(signal: OtlpSignal, message: Any) -> int:
    if signal is OtlpSignal.TRACES:
        return sum(len(s.spans) for r in message.resource_spans for s in r.scope_spans)
    if signal is OtlpSignal.LOGS:
        return sum(len(s.log_records) for r in message.resource_logs for s in r.scope_logs)
    return sum(len(s.metrics) for r in message.resource_metrics for s in r.scope_metrics)


async def _read(request: Request, receiver: ReceiverState) -> bytes:
    async with asyncio.timeout(BODY_READ_TIMEOUT_S):
        return await read_body(
            request.stream(),
            request.headers.get("content-length"),
            request.headers.get("content-encoding"),
            receiver.config.limits,
        )


async def _ingest(request: Request, signal: OtlpSignal) -> Response:
    receiver = receiver_of(request)
    state = otlp_state(request)
    content_type = request.headers.get("content-type")
    fmt = format_of(content_type)
    if fmt is None:
        if signal is OtlpSignal.TRACES:
            state.count(project_of(request), refused=1)
        text = (
            f"Content-Type {content_type!r} is not an OTLP/HTTP encoding; "
            "send application/x-protobuf or application/json"
        )
        return _answer(encode_error(415, text, OtlpFormat.JSON), OtlpFormat.JSON, 415)
    try:
        body = await _read(request, receiver)
        message = decode_request(signal, body, fmt)
    except (BodyError, OtlpBodyError) as exc:
        if signal is OtlpSignal.TRACES:
            state.count(project_of(request), refused=1)
        return _answer(encode_error(exc.status, exc.message, fmt), fmt, exc.status)
    except TimeoutError:
        return _answer(encode_error(408, f"the body did not arrive within {BODY_READ_TIMEOUT_S:g} s", fmt), fmt, 408)
    rejected, error_message = 0, ""
    if signal is OtlpSignal.TRACES:
        outcome = await _store_spans(request, receiver, state, message, fmt)
        if isinstance(outcome, Response):
            return outcome
        rejected, error_message = outcome
    items = _items(signal, message)
    if state.forwarder is not None and items:  # protobuf upstream: every OTLP/HTTP server takes it, not all take JSON
        upstream_body = body if fmt is OtlpFormat.PROTOBUF else bytes(message.SerializeToString())
        state.forwarder.offer(signal, upstream_body, OtlpFormat.PROTOBUF.value, items=items)
    return _answer(encode_response(signal, fmt, rejected=rejected, error_message=error_message), fmt)


async def _store_spans(
    request: Request, receiver: ReceiverState, state: OtlpState, message: Any, fmt: OtlpFormat
) -> tuple[int, str] | Response:
    """Validate and store the spans; return (rejected, message) or the error answer."""
    project = project_of(request)
    batch = spans_from_request(message, project=project, received_at=now_ts())
    state.count(project, requests=1, rejected=batch.rejected)
    if not batch.rows:
        return batch.rejected, batch.error_message
    retry = {"Retry-After": str(receiver.config.retry_after_s)}
    if receiver.writer.depth >= receiver.config.write_queue_max_requests:
        state.count(project, refused=1)
        return _answer(encode_error(503, "the receiver is busy; retry later", fmt), fmt, 503, retry)
    store, rows = receiver.store, batch.rows
    try:
        new = await receiver.writer.call(lambda: store.store_spans(rows))
    except StoreError as exc:
        state.count(project, refused=1)
        return _answer(encode_error(503, f"the store could not take the spans: {exc}", fmt), fmt, 503, retry)
    state.count(project, accepted=new, duplicates=len(rows) - new)
    return batch.rejected, batch.error_message


async def ingest_traces(request: Request) -> Response:
    """Store the spans of an OTLP export request; answer with the (partial) success."""
    return await _ingest(request, OtlpSignal.TRACES)


async def ingest_logs(request: Request) -> Response:
    """Accept an OTLP logs export (not stored; forwarded when forwarding is on)."""
    return await _ingest(request, OtlpSignal.LOGS)


async def ingest_metrics(request: Request) -> Response:
    """Accept an OTLP metrics export (not stored; forwarded when forwarding is on)."""
    return await _ingest(request, OtlpSignal.METRICS)


async def get_trace(request: Request) -> Response:
    """The spans of one trace with parent and child links, and the runs and node attempts they belong to."""
    raw = request.path_params["trace_id"]
    trace_id = raw.lower()
    if not is_trace_id(trace_id):
        return error_response(400, f"{raw[:64]!r} is not a trace id: write 32 hexadecimal digits, not all zero")
    receiver = receiver_of(request)
    spans, links = await receiver.store.get_trace(trace_id, project=project_of(request))
    if not spans and not links.run_ids:
        return error_response(404, f"there is no span and no run of trace {trace_id}")
    answer = trace_json(trace_id, spans, links)
    answer["trace_url"] = trace_url(receiver.config.trace_url_template, trace_id)
    return JSONResponse(answer)


async def otlp_stats(request: Request) -> Response:
    """Counters of OTLP ingest and of forwarding (``forwarding`` is null when it is off).

    With API keys on, ``spans`` counts the caller's project only; ``forwarding`` stays the whole
    receiver's (totals only: never a trace, span or project name).
    """
    state = otlp_state(request)
    project = project_of(request)
    spans = state.spans if project is None else state.by_project.get(project, SpanStats())
    forwarding = state.forwarder.stats.as_json() if state.forwarder is not None else None
    return JSONResponse({"spans": spans.as_json(), "forwarding": forwarding})


async def stop_forwarding(app: Any, timeout_s: float = FORWARD_STOP_S) -> None:
    """Send what the forwarder still holds (within ``timeout_s``) and stop it; for the app's shutdown."""
    state: OtlpState | None = getattr(app.state, "otlp", None)
    if state is not None and state.forwarder is not None:
        await state.forwarder.stop(timeout_s)


on_shutdown = stop_forwarding
"""The app factory awaits this when the receiver stops: queued forwards go out first."""

ROUTES: Final = [
    Route(OtlpSignal.TRACES.value, ingest_traces, methods=["POST"]),
    Route(OtlpSignal.LOGS.value, ingest_logs, methods=["POST"]),
    Route(OtlpSignal.METRICS.value, ingest_metrics, methods=["POST"]),
    Route("/api/traces/{trace_id}", get_trace, methods=["GET"]),
    Route("/api/otlp/stats", otlp_stats, methods=["GET"]),
]
