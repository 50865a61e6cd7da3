"""Telemetry made by the stock OpenTelemetry SDK for the OTLP tests: spans, log records (through the stock
logging handler) and metrics, exported by the stock exporters of either protocol."""

from __future__ import annotations

import logging
import secrets
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import LogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from tests.otel._support import stock_provider


def make_spans(service_name: str = "stock-app") -> tuple[list[ReadableSpan], str, dict[str, str]]:
    """A SERVER span with a CLIENT child: the spans, the trace id and the span ids by name (hex)."""
    provider, memory = stock_provider(service_name)
    tracer = provider.get_tracer("tests.otel", "1.0")
    with tracer.start_as_current_span("GET /orders", kind=SpanKind.SERVER), tracer.start_as_current_span("charge"):
        pass
    spans = list(memory.get_finished_spans())
    provider.shutdown()
    ids = {span.name: f"{span.context.span_id:016x}" for span in spans}
    return spans, f"{spans[0].context.trace_id:032x}", ids


@contextmanager
def stock_logger(exporter: LogRecordExporter, name: str = "shop.steps") -> Iterator[logging.Logger]:
    """A Python logger whose records go through the stock ``LoggingHandler`` to ``exporter`` (synchronously)."""
    provider = LoggerProvider(resource=Resource.create({"service.name": "stock-app"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    with warnings.catch_warnings():  # deprecated in favour of opentelemetry-instrumentation-logging, still stock
        warnings.simplefilter("ignore", DeprecationWarning)
        handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
    logger = logging.getLogger(f"{name}.{secrets.token_hex(4)}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield logger
    finally:
        logger.removeHandler(handler)
        provider.shutdown()


@contextmanager
def inside_span(trace_id: str, span_id: str) -> Iterator[None]:
    """Make ``trace_id``/``span_id`` (hex) the current span, as a node attempt's span is while it runs."""
    context = SpanContext(int(trace_id, 16), int(span_id, 16), is_remote=False, trace_flags=TraceFlags(1))
    with trace.use_span(NonRecordingSpan(context)):
        yield


def make_metrics() -> MetricsData:
    """A counter (a sum), a histogram and a gauge from the stock SDK, collected once."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "stock-app"}))
    meter = provider.get_meter("tests.otel", "1.0")
    meter.create_counter("orders", unit="1", description="orders taken").add(3, {"region": "eu"})
    meter.create_histogram("latency", unit="ms").record(12.0, {"route": "/orders"})
    meter.create_gauge("queue_depth").set(7)
    data = reader.get_metrics_data()
    provider.shutdown()
    assert data is not None
    return data


def series_by_name(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The series of a ``/api/otlp/metrics`` answer by metric name (one series each)."""
    return {series["name"]: series for series in answer["series"]}
