"""Spans over OTLP/gRPC, through the OpenTelemetry SDK's own gRPC exporter (the ``otlp-grpc`` extra).

Chosen by ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=grpc`` or
``OTEL_EXPORTER_OTLP_PROTOCOL=grpc``. The SDK builds its spans as OTLP JSON
(:mod:`~flowledger.instrument.delivery._otlp_spans`); here each becomes a
``ReadableSpan`` of ``opentelemetry-sdk`` and goes out through
``opentelemetry-exporter-otlp-proto-grpc``'s ``OTLPSpanExporter``, which
reads the endpoint, headers, TLS, compression and timeout variables as
every OTel SDK does. Without an OTLP endpoint the spans go to the
receiver's host on the gRPC port by convention (4317), with its API key.
Without the extra a warning says what to install, once, and spans go over
OTLP/HTTP protobuf as before. Nothing of this is imported unless gRPC is
asked for.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit, urlunsplit

from flowledger.instrument._config import Settings
from flowledger.instrument.delivery._otlp_protobuf import utf8_request

if TYPE_CHECKING:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import ReadableSpan

__all__ = ["GRPC_PROTOCOL", "GrpcSpanExport", "grpc_requested"]

GRPC_PROTOCOL: Final = "grpc"
RECEIVER_GRPC_PORT: Final = 4317
"""The OTLP/gRPC port by convention: where the receiver's ``--grpc-port`` usually listens."""
EXPORTER_MODULE: Final = "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"
MISSING_EXPORTER_WARNING: Final = (
    "flowledger: OTEL_EXPORTER_OTLP_PROTOCOL asks for grpc, but the OpenTelemetry gRPC exporter is not installed "
    "(pip install 'flowledger[otlp-grpc]'); spans are sent over OTLP/HTTP protobuf instead."
)
_PROTOCOL_VARIABLES: Final = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
_TRACES_PATH: Final = "/v1/traces"
_SDK_KIND_OFFSET: Final = 1
"""OTLP numbers span kinds from 1 (INTERNAL); the OTel Python API from 0."""

_log = logging.getLogger("flowledger")
_warned: set[str] = set()


def grpc_requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the OTel protocol variables ask for gRPC (the traces-specific one wins when set)."""
    env = os.environ if environ is None else environ
    for name in _PROTOCOL_VARIABLES:
        value = env.get(name, "").strip().lower()
        if value:
            return value == GRPC_PROTOCOL
    return False


def exporter_available() -> bool:
    """Whether the OTel gRPC span exporter can be imported (found without importing it)."""
    try:
        return importlib.util.find_spec(EXPORTER_MODULE) is not None
    except (ImportError, ValueError):
        return False


def warn_missing_exporter() -> None:
    """Say once per process that gRPC was asked for without its exporter."""
    if "missing" not in _warned:
        _warned.add("missing")
        _log.warning(MISSING_EXPORTER_WARNING)


def grpc_endpoint(settings: Settings) -> str:
    """Where gRPC spans go: the OTLP endpoint given (without an HTTP ``/v1/traces``), else the receiver's host:4317.

    Userinfo and query are left out: a gRPC target has neither (credentials go in
    ``OTEL_EXPORTER_OTLP_HEADERS``), the exporter took ``user:pw@host`` for a host name it could
    not resolve, and its own log line printed the password.
    """
    if settings.otlp_traces_endpoint:
        endpoint = settings.otlp_traces_endpoint
        try:
            parts = urlsplit(endpoint)
        except ValueError:  # not a URL the exporter could use either; it reports that itself
            return endpoint
        path = parts.path[: -len(_TRACES_PATH)] if parts.path.endswith(_TRACES_PATH) else parts.path
        return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], path, "", ""))
    parts = urlsplit(settings.endpoint)
    host = parts.hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme or 'http'}://{host}:{RECEIVER_GRPC_PORT}"


def _value(node: Mapping[str, Any]) -> Any:
    if "stringValue" in node:
        return node["stringValue"]
    if "boolValue" in node:
        return bool(node["boolValue"])
    if "intValue" in node:
        return int(node["intValue"])
    if "doubleValue" in node:
        return float(node["doubleValue"])
    return None


def _attributes(pairs: list[dict[str, Any]]) -> dict[str, Any]:
    return {pair["key"]: _value(pair["value"]) for pair in pairs}


def readable_spans(request: Mapping[str, Any]) -> list[ReadableSpan]:
    """The spans of an OTLP JSON ``ExportTraceServiceRequest`` built by this SDK, as OTel SDK ``ReadableSpan``s."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

    out: list[ReadableSpan] = []
    for resource_spans in request["resourceSpans"]:
        resource = Resource(_attributes(resource_spans["resource"]["attributes"]))
        for scope_spans in resource_spans["scopeSpans"]:
            scope = InstrumentationScope(scope_spans["scope"]["name"], scope_spans["scope"].get("version"))
            for span in scope_spans["spans"]:
                trace_id = int(span["traceId"], 16)
                context = SpanContext(trace_id, int(span["spanId"], 16), False, TraceFlags(TraceFlags.SAMPLED))
                parent_id = span.get("parentSpanId")
                parent = SpanContext(trace_id, int(parent_id, 16), False) if parent_id else None
                status = span.get("status", {})
                events = [
                    Event(event["name"], _attributes(event.get("attributes", [])), int(event["timeUnixNano"]))
                    for event in span.get("events", [])
                ]
                out.append(
                    ReadableSpan(
                        name=span["name"],
                        context=context,
                        parent=parent,
                        resource=resource,
                        attributes=_attributes(span["attributes"]),
                        events=events,
                        kind=SpanKind(int(span["kind"]) - _SDK_KIND_OFFSET),
                        status=Status(StatusCode(int(status.get("code", 0))), status.get("message") or None),
                        start_time=int(span["startTimeUnixNano"]),
                        end_time=int(span["endTimeUnixNano"]),
                        instrumentation_scope=scope,
                    )
                )
    return out


class GrpcSpanExport:
    """One OTel SDK ``OTLPSpanExporter`` (gRPC), made when the span sender is (in the application's thread).

    Made at once, not on first export: the exporter's import builds a default resource on a thread pool,
    which fails once the interpreter is shutting down, when the last spans of a short program go out.
    """

    def __init__(self, settings: Settings, headers: list[tuple[str, str]]) -> None:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import SpanExportResult

        readable_spans({"resourceSpans": []})  # imports what converting needs, now
        self._settings = settings
        self._success = SpanExportResult.SUCCESS
        self._exporter: OTLPSpanExporter | None = OTLPSpanExporter(
            endpoint=self.endpoint,
            headers=tuple((key.lower(), value) for key, value in headers) or None,
            timeout=settings.request_timeout_s,
        )

    @property
    def endpoint(self) -> str:
        """Where the spans go."""
        return grpc_endpoint(self._settings)

    def export(self, request: Mapping[str, Any]) -> bool:
        """Export the request's spans; whether the exporter reported success (False once closed)."""
        exporter = self._exporter
        if exporter is None:
            return False
        return exporter.export(readable_spans(utf8_request(request))) is self._success

    def close(self) -> None:
        """Close the exporter's channel (idempotent)."""
        exporter, self._exporter = self._exporter, None
        if exporter is not None:
            exporter.shutdown()
