"""OTLP/HTTP ingest: stock OTel exporters (protobuf) and OTLP JSON against a real receiver."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from flowledger.receiver._config import IngestLimits, ReceiverConfig
from tests.otel._support import LiveReceiver, otlp_json, receiver_running, stock_provider

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def _make_spans(service_name: str = "stock-app") -> tuple[list[ReadableSpan], dict[str, int]]:
    """A parent SERVER span with a CLIENT child that fails with a recorded exception."""
    provider, memory = stock_provider(service_name)
    tracer = provider.get_tracer("tests.otel", "1.0")
    with tracer.start_as_current_span("GET /orders", kind=SpanKind.SERVER) as parent:
        parent.set_attribute("http.request.method", "GET")
        parent.set_attribute("tags", ["a", "b"])
        with tracer.start_as_current_span("charge", kind=SpanKind.CLIENT) as child:
            child.set_attribute("attempt", 2)
            child.set_attribute("ratio", 0.5)
            try:
                raise ValueError("card declined")
            except ValueError as exc:
                child.record_exception(exc)
                child.set_status(Status(StatusCode.ERROR, "card declined"))
    spans = list(memory.get_finished_spans())
    provider.shutdown()
    ids = {span.name: span.context.span_id for span in spans}
    ids["trace"] = spans[0].context.trace_id
    return spans, ids


def _export(receiver: LiveReceiver, spans: list[ReadableSpan], **kwargs: Any) -> SpanExportResult:
    exporter = OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces", **kwargs)
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()  # type: ignore[no-untyped-call]  # the OTel SDK leaves it unannotated


def _by_name(trace_doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {span["name"]: span for span in trace_doc["spans"]}


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
def test_stock_exporter_protobuf_spans_are_stored_with_parent_links(
    receiver: LiveReceiver, compression: Compression
) -> None:
    """The stock OTLP/HTTP protobuf exporter succeeds, plain or gzipped, and the trace keeps its parent links."""
    spans, ids = _make_spans()
    assert _export(receiver, spans, compression=compression) is SpanExportResult.SUCCESS
    doc = receiver.trace(f"{ids['trace']:032x}")
    assert doc["span_count"] == 2
    by_name = _by_name(doc)
    parent, child = by_name["GET /orders"], by_name["charge"]
    assert parent["parent_span_id"] is None
    assert child["parent_span_id"] == parent["span_id"] == f"{ids['GET /orders']:016x}"
    assert parent["children"] == [child["span_id"]]
    assert child["parent_found"] is True
    assert doc["root_span_ids"] == [parent["span_id"]]
    assert (parent["kind"], child["kind"]) == ("server", "client")
    assert parent["attributes"] == {"http.request.method": "GET", "tags": ["a", "b"]}
    assert child["attributes"] == {"attempt": 2, "ratio": 0.5}
    assert child["status"] == {"code": "error", "message": "card declined"}
    assert parent["status"]["code"] == "unset"
    (event,) = child["events"]
    assert event["name"] == "exception"
    assert event["attributes"]["exception.type"] == "ValueError"
    assert event["attributes"]["exception.message"] == "card declined"
    assert parent["service_name"] == "stock-app"
    assert parent["scope"] == {"name": "tests.otel", "version": "1.0"}
    assert parent["start_time_unix_nano"] <= child["start_time_unix_nano"]
    assert child["end_time_unix_nano"] <= parent["end_time_unix_nano"]


def test_default_endpoint_variable_reaches_the_receiver(
    receiver: LiveReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stock exporter configured only by OTEL_EXPORTER_OTLP_ENDPOINT (its default path /v1/traces) works."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    spans, ids = _make_spans()
    exporter = OTLPSpanExporter()
    try:
        assert exporter.export(spans) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()  # type: ignore[no-untyped-call]  # the OTel SDK leaves it unannotated
    assert receiver.trace(f"{ids['trace']:032x}")["span_count"] == 2


@pytest.mark.parametrize("gzipped", [False, True])
def test_otlp_json_is_stored_and_answered_in_json(receiver: LiveReceiver, gzipped: bool) -> None:
    """An OTLP JSON export (hex ids, string int64s) is stored and answered with a JSON ExportTraceServiceResponse."""
    spans, ids = _make_spans("json-app")
    body = json.dumps(otlp_json(spans)).encode()
    headers = {"content-encoding": "gzip"} if gzipped else {}
    response = receiver.post("/v1/traces", gzip.compress(body) if gzipped else body, JSON, **headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(JSON)
    assert response.json() == {}
    doc = receiver.trace(f"{ids['trace']:032x}")
    by_name = _by_name(doc)
    assert by_name["charge"]["parent_span_id"] == f"{ids['GET /orders']:016x}"
    assert by_name["charge"]["attributes"] == {"attempt": 2, "ratio": 0.5}
    assert by_name["GET /orders"]["service_name"] == "json-app"


def test_protobuf_answer_is_an_export_trace_service_response(receiver: LiveReceiver) -> None:
    """A protobuf request is answered in protobuf: an empty ExportTraceServiceResponse on full success."""
    spans, _ = _make_spans()
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    response = receiver.post("/v1/traces", encode_spans(spans).SerializeToString(), PROTOBUF)
    assert response.status_code == 200
    assert response.headers["content-type"] == PROTOBUF
    answer = trace_service_pb2.ExportTraceServiceResponse.FromString(response.content)
    assert not answer.HasField("partial_success")


def _with_bad_spans(doc: dict[str, Any]) -> dict[str, Any]:
    good = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    zero_trace = {**good[0], "traceId": "0" * 32, "spanId": "1" * 16}
    short_span = {**good[0], "spanId": "abcd"}
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"] = [zero_trace, *good, short_span]
    return doc


def test_partial_success_in_json_names_the_rejected_spans(receiver: LiveReceiver) -> None:
    """Invalid spans are rejected and counted in partialSuccess; their valid siblings are stored."""
    spans, ids = _make_spans()
    response = receiver.post("/v1/traces", json.dumps(_with_bad_spans(otlp_json(spans))).encode(), JSON)
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 2
    assert "spans[0]: traceId is all zero" in partial["errorMessage"]
    assert "spans[3]: spanId is 2 bytes, not 8" in partial["errorMessage"]
    assert receiver.trace(f"{ids['trace']:032x}")["span_count"] == 2


def test_partial_success_in_protobuf(receiver: LiveReceiver) -> None:
    """The protobuf answer carries partial_success with the count of rejected spans."""
    spans, _ = _make_spans()
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    request = encode_spans(spans)
    bad = request.resource_spans[0].scope_spans[0].spans.add()
    bad.CopyFrom(request.resource_spans[0].scope_spans[0].spans[0])
    bad.span_id = b"\x00" * 8
    response = receiver.post("/v1/traces", request.SerializeToString(), PROTOBUF)
    assert response.status_code == 200
    answer = trace_service_pb2.ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    assert "spanId is all zero" in answer.partial_success.error_message


def test_a_span_sent_twice_is_stored_once(receiver: LiveReceiver) -> None:
    """At-least-once delivery: the same spans exported twice are stored once and counted as duplicates."""
    spans, ids = _make_spans()
    assert _export(receiver, spans) is SpanExportResult.SUCCESS
    assert _export(receiver, spans) is SpanExportResult.SUCCESS
    body = json.dumps(otlp_json(spans)).encode()
    assert receiver.post("/v1/traces", body, JSON).status_code == 200
    assert receiver.trace(f"{ids['trace']:032x}")["span_count"] == 2
    stats = receiver.get("/api/otlp/stats").json()["spans"]
    assert (stats["accepted"], stats["duplicates"], stats["requests"]) == (2, 4, 3)


@pytest.mark.parametrize(
    ("body", "content_type", "needle"),
    [
        (b"this is not protobuf \xff\xff", PROTOBUF, "not an OTLP protobuf ExportTraceServiceRequest"),
        (b'{"resourceSpans": 3}', JSON, "not an OTLP JSON ExportTraceServiceRequest"),
        (b"[1, 2]", JSON, "must be a JSON object"),
        (b"{not json", JSON, "not valid JSON"),
        (b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"xyz"}]}]}]}', JSON, "not a hex id"),
    ],
)
def test_a_body_that_is_not_otlp_is_400_with_a_status_message(
    receiver: LiveReceiver, body: bytes, content_type: str, needle: str
) -> None:
    """A body that is not an OTLP export request gets 400 and a google.rpc.Status in the request's content type."""
    response = receiver.post("/v1/traces", body, content_type)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith(content_type)
    if content_type == PROTOBUF:
        message = status_pb2.Status.FromString(response.content).message
    else:
        message = response.json()["message"]
    assert needle in message


def test_other_content_types_are_415(receiver: LiveReceiver) -> None:
    """A Content-Type that is not an OTLP encoding is refused with 415 naming the two that are."""
    response = receiver.post("/v1/traces", b"hello", "text/plain")
    assert response.status_code == 415
    assert "application/x-protobuf or application/json" in response.json()["message"]


def test_too_large_bodies_are_413(tmp_path: Any) -> None:
    """A body over the size limit, or a gzip body inflating past it, is refused with 413."""
    config = ReceiverConfig(
        db_path=tmp_path / "small.db",
        sweep_interval_s=0,
        limits=IngestLimits(max_body_bytes=4096, max_inflated_bytes=8192),
    )
    spans, _ = _make_spans()
    doc = otlp_json(spans)
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["name"] = "x" * 9000
    body = json.dumps(doc).encode()
    with receiver_running(config) as live:
        assert live.post("/v1/traces", body, JSON).status_code == 413
        bomb = live.post("/v1/traces", gzip.compress(body), JSON, **{"content-encoding": "gzip"})
        assert bomb.status_code == 413
        assert "inflates to more than 8192 bytes" in bomb.json()["message"]
        assert _export(live, spans) is SpanExportResult.SUCCESS


def test_logs_and_metrics_get_an_otlp_success(receiver: LiveReceiver) -> None:
    """/v1/logs and /v1/metrics answer with their Export*ServiceResponse, in protobuf and in JSON."""
    for path, response_type in (
        ("/v1/logs", logs_service_pb2.ExportLogsServiceResponse),
        ("/v1/metrics", metrics_service_pb2.ExportMetricsServiceResponse),
    ):
        answer = receiver.post(path, b"", PROTOBUF)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == PROTOBUF
        response_type.FromString(answer.content)
        json_answer = receiver.post(path, b"{}", JSON)
        assert (json_answer.status_code, json_answer.json()) == (200, {})
        assert receiver.post(path, b"\xff\xff", PROTOBUF).status_code == 400


def test_stock_log_and_metric_exporters_succeed(receiver: LiveReceiver) -> None:
    """The stock OTLP/HTTP log and metric exporters report success against the receiver."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    memory_logs = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]  # the OTel SDK leaves it unannotated
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(memory_logs))
    logger_provider.get_logger("tests.otel").emit(body="hello")
    log_exporter = OTLPLogExporter(endpoint=f"{receiver.url}/v1/logs")
    try:
        result = log_exporter.export(memory_logs.get_finished_logs())
    finally:
        log_exporter.shutdown()  # type: ignore[no-untyped-call]  # the OTel SDK leaves it unannotated
        logger_provider.shutdown()
    assert result.name == "SUCCESS"

    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    meter_provider.get_meter("tests.otel").create_counter("orders").add(3)
    data = reader.get_metrics_data()
    assert data is not None
    metric_exporter = OTLPMetricExporter(endpoint=f"{receiver.url}/v1/metrics")
    try:
        assert metric_exporter.export(data).name == "SUCCESS"
    finally:
        metric_exporter.shutdown()
        meter_provider.shutdown()


def test_get_trace_validates_the_id(receiver: LiveReceiver) -> None:
    """GET /api/traces answers 400 for a malformed id and 404 for a trace it has never seen."""
    assert receiver.get("/api/traces/not-a-trace").status_code == 400
    assert receiver.get(f"/api/traces/{'0' * 32}").status_code == 400
    missing = receiver.get(f"/api/traces/{'ab' * 16}")
    assert missing.status_code == 404
    assert "no span and no run" in missing.json()["error"]


def test_uppercase_trace_ids_are_found(receiver: LiveReceiver) -> None:
    """The trace id in the URL is matched case-insensitively."""
    spans, ids = _make_spans()
    assert _export(receiver, spans) is SpanExportResult.SUCCESS
    assert receiver.trace(f"{ids['trace']:032X}")["span_count"] == 2


def test_spans_survive_a_restart(receiver_config: ReceiverConfig) -> None:
    """Spans live in the SQLite file: a new receiver on the same database serves them."""
    spans, ids = _make_spans()
    with receiver_running(receiver_config) as first:
        assert _export(first, spans) is SpanExportResult.SUCCESS
    with receiver_running(receiver_config) as second:
        assert second.trace(f"{ids['trace']:032x}")["span_count"] == 2


def test_api_keys_scope_spans_to_their_project(tmp_path: Any) -> None:
    """With API keys, exporters send a bearer token; a trace is visible only with a key of the same project."""
    config = ReceiverConfig(
        db_path=tmp_path / "keys.db", sweep_interval_s=0, api_keys={"token-a": "shop", "token-b": "billing"}
    )
    spans, ids = _make_spans()
    with receiver_running(config) as live:
        assert _export(live, spans) is SpanExportResult.FAILURE
        assert _export(live, spans, headers={"Authorization": "Bearer token-a"}) is SpanExportResult.SUCCESS
        path = f"/api/traces/{ids['trace']:032x}"
        mine = live.get(path, headers={"Authorization": "Bearer token-a"})
        assert mine.status_code == 200
        assert {span["project"] for span in mine.json()["spans"]} == {"shop"}
        assert live.get(path, headers={"Authorization": "Bearer token-b"}).status_code == 404


def test_deflate_is_refused_with_a_clear_415(receiver: LiveReceiver) -> None:
    """OTLP/HTTP defines gzip only: a deflate body is 415 naming the encodings the receiver takes."""
    spans, _ = _make_spans()
    assert _export(receiver, spans, compression=Compression.Deflate) is SpanExportResult.FAILURE
    response = receiver.post("/v1/traces", b"x", PROTOBUF, **{"content-encoding": "deflate"})
    assert response.status_code == 415
    assert "send gzip or no encoding" in status_pb2.Status.FromString(response.content).message
