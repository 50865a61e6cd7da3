"""OTLP/HTTP ingest (``/v1/traces``, ``/v1/logs``, ``/v1/metrics``) and ``GET /api/traces/{trace_id}``.

Any OpenTelemetry SDK or Collector pointed at the receiver (port 4318 by
default) can export to it, in protobuf or JSON, gzipped or not. Spans are
validated and stored once per ``(trace_id, span_id, project)`` through the single
writer; the answer is the OTLP ``ExportTraceServiceResponse`` in the
request's own content type, with ``partial_success`` when some spans were
rejected. Log records and metric data points are validated and stored the
same way (see ``_logs.py`` and ``_metrics.py``), and read back at
``/api/otlp/logs`` and ``/api/otlp/metrics`` (``_queries.py``); what the
gRPC services do is the same code (``_accept.py``). Client mistakes are 4xx with a
``google.rpc.Status`` body: 400 for a body that is not OTLP, 413 for one too
large, 415 for another content type; a busy store is 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flowledger._exceptions import BodyError, OtlpBodyError
from flowledger.receiver._body import read_body
from flowledger.receiver._params import refuse_params
from flowledger.receiver._state import ReceiverState, error_response, project_of, receiver_of
from flowledger.receiver._trace_url import trace_url
from flowledger.receiver.otlp._accept import OtlpState, Refusal, accept, otlp_state_of
from flowledger.receiver.otlp._decode import (
    OtlpFormat,
    OtlpSignal,
    encode_error,
    encode_response,
    format_of,
)
from flowledger.receiver.otlp._queries import otlp_logs, otlp_metrics
from flowledger.receiver.otlp._salvage import decode_export
from flowledger.receiver.otlp._spans import is_trace_id, trace_json

__all__ = ["ROUTES", "OtlpState", "otlp_state"]

BODY_READ_TIMEOUT_S: Final = 30.0
"""A client that takes longer to send its body is answered 408."""
FORWARD_STOP_S: Final = 5.0


def otlp_state(request: Request) -> OtlpState:
    """The OTLP state of the app serving ``request``, made on first use (with the forwarder, if configured)."""
    return otlp_state_of(request.app, receiver_of(request))


def _answer(body: bytes, fmt: OtlpFormat, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type=fmt.value, headers=headers)


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
    project = project_of(request)
    content_type = request.headers.get("content-type")
    fmt = format_of(content_type)
    if fmt is None:
        state.count(signal, project, refused=1)
        text = (
            f"Content-Type {content_type!r} is not an OTLP/HTTP encoding; "
            "send application/x-protobuf or application/json"
        )
        return _answer(encode_error(415, text, OtlpFormat.JSON), OtlpFormat.JSON, 415)
    try:
        body = await _read(request, receiver)
        decoded = decode_export(signal, body, fmt)
    except (BodyError, OtlpBodyError) as exc:
        state.count(signal, project, refused=1)
        return _answer(encode_error(exc.status, exc.message, fmt), fmt, exc.status)
    except TimeoutError:
        return _answer(encode_error(408, f"the body did not arrive within {BODY_READ_TIMEOUT_S:g} s", fmt), fmt, 408)
    outcome = await accept(
        request.app,
        receiver,
        decoded,
        project=project,
        protobuf_body=body if fmt is OtlpFormat.PROTOBUF else None,
    )
    if isinstance(outcome, Refusal):
        retry = {"Retry-After": str(receiver.config.retry_after_s)} if outcome.retry else None
        return _answer(encode_error(outcome.status, outcome.message, fmt), fmt, outcome.status, retry)
    body = encode_response(signal, fmt, rejected=outcome.rejected, error_message=outcome.error_message)
    return _answer(body, fmt)


async def ingest_traces(request: Request) -> Response:
    """Store the spans of an OTLP export request; answer with the (partial) success."""
    return await _ingest(request, OtlpSignal.TRACES)


async def ingest_logs(request: Request) -> Response:
    """Store the log records of an OTLP export request; answer with the (partial) success."""
    return await _ingest(request, OtlpSignal.LOGS)


async def ingest_metrics(request: Request) -> Response:
    """Store the data points of an OTLP metrics export request; answer with the (partial) success."""
    return await _ingest(request, OtlpSignal.METRICS)


async def get_trace(request: Request) -> Response:
    """The spans of one trace with parent and child links, and the runs and node attempts they belong to."""
    if refused := refuse_params(request):
        return error_response(400, refused)
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

    With API keys on, ``spans``, ``log_records`` and ``metric_points`` count the caller's project only;
    ``forwarding`` stays the whole receiver's (totals only: never a trace, span or project name).
    """
    if refused := refuse_params(request):
        return error_response(400, refused)
    state = otlp_state(request)
    forwarding = state.forwarder.stats.as_json() if state.forwarder is not None else None
    return JSONResponse({**state.stats_json(project_of(request)), "forwarding": forwarding})


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
    Route("/api/otlp/metrics", otlp_metrics, methods=["GET"]),
    Route("/api/otlp/logs", otlp_logs, methods=["GET"]),
]
