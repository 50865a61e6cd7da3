"""OTLP over gRPC: the stock gRPC exporters (traces, logs, metrics) against a real receiver, and its refusals."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.trace.export import SpanExportResult

from flowledger.receiver._config import IngestLimits, ReceiverConfig
from tests.otel._support import LiveReceiver, free_port, receiver_running, run_events
from tests.receiver.otlp._stock import inside_span, make_metrics, make_spans, series_by_name, stock_logger

TRACE_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOGS_METHOD = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
METRICS_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


def _grpc_config(tmp_path: Path, **changes: Any) -> ReceiverConfig:
    return ReceiverConfig(db_path=tmp_path / "flowledger.db", sweep_interval_s=0, grpc_port=free_port(), **changes)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveReceiver]:
    """A real receiver serving OTLP/HTTP and OTLP/gRPC on 127.0.0.1."""
    with receiver_running(_grpc_config(tmp_path)) as receiver:
        yield receiver


def _target(receiver: LiveReceiver) -> str:
    return f"127.0.0.1:{receiver.config.grpc_port}"


def _call(receiver: LiveReceiver, method: str, body: bytes, metadata: tuple[tuple[str, str], ...] = ()) -> bytes:
    """One raw unary call (bytes in, bytes out), so a test can send what no exporter would."""
    with grpc.insecure_channel(_target(receiver)) as channel:
        stub: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(method)
        answer: bytes = stub(body, metadata=metadata, timeout=30)
        return answer


@pytest.mark.parametrize("compression", [grpc.Compression.NoCompression, grpc.Compression.Gzip])
def test_stock_grpc_span_exporter_stores_the_trace(live: LiveReceiver, compression: grpc.Compression) -> None:
    """The stock OTLP gRPC span exporter succeeds, plain or gzipped, and the spans keep their parent links."""
    spans, trace_id, ids = make_spans()
    exporter = OTLPSpanExporter(endpoint=_target(live), insecure=True, compression=compression)
    try:
        assert exporter.export(spans) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    doc = live.trace(trace_id)
    by_name = {span["name"]: span for span in doc["spans"]}
    assert by_name["charge"]["parent_span_id"] == by_name["GET /orders"]["span_id"] == ids["GET /orders"]
    assert by_name["GET /orders"]["service_name"] == "stock-app"
    assert live.get("/api/otlp/stats").json()["spans"]["accepted"] == 2


def test_stock_logging_handler_over_grpc_lands_on_the_node_attempt(live: LiveReceiver) -> None:
    """Records of the stock LoggingHandler, exported over gRPC inside a node's span, are linked to that attempt."""
    trace_id, run_span, node_span = "ab" * 16, "01" * 8, "02" * 8
    run_id, events = run_events(trace_id, run_span, node_span)
    assert live.post("/v1/events", _json({"events": events}), "application/json").status_code == 200
    exporter = OTLPLogExporter(endpoint=_target(live), insecure=True)
    with stock_logger(exporter) as logger:
        with inside_span(trace_id, node_span):
            logger.warning("stock is low: %d left", 3)
            try:
                raise ValueError("no stock")
            except ValueError:
                logger.exception("fetch failed")
        with inside_span(trace_id, run_span):
            logger.info("run-level line")
        logger.info("outside any span")
    answer = live.get("/api/otlp/logs", params={"run_id": run_id}).json()["records"]
    by_body = {record["body"]: record for record in answer}
    assert set(by_body) == {"stock is low: 3 left", "fetch failed", "run-level line"}
    low = by_body["stock is low: 3 left"]
    assert (low["run_id"], low["node_id"], low["attempt"]) == (run_id, "fetch", 1)
    assert (low["severity_text"], low["span_id"], low["trace_id"]) == ("WARN", node_span, trace_id)
    assert by_body["fetch failed"]["attributes"]["exception.type"] == "ValueError"
    assert (by_body["run-level line"]["run_id"], by_body["run-level line"]["node_id"]) == (run_id, None)
    newest = live.get("/api/otlp/logs").json()["records"]
    assert [r["body"] for r in newest][-1] == "outside any span"
    (fetch,) = live.get(f"/api/runs/{run_id}").json()["nodes"]
    beside = {line["message"]: line for line in fetch["logs"] if line["source"] == "otlp"}
    assert set(beside) == {"stock is low: 3 left", "fetch failed"}
    assert (beside["stock is low: 3 left"]["level"], beside["stock is low: 3 left"]["span_id"]) == ("WARN", node_span)
    assert "ValueError: no stock" in beside["fetch failed"]["exception"]


def test_stock_grpc_metric_exporter_stores_time_series(live: LiveReceiver) -> None:
    """A counter, a histogram and a gauge exported by the stock gRPC exporter become series with their points."""
    exporter = OTLPMetricExporter(endpoint=_target(live), insecure=True)
    try:
        assert exporter.export(make_metrics()).name == "SUCCESS"
    finally:
        exporter.shutdown()
    listing = series_by_name(live.get("/api/otlp/metrics").json())
    assert set(listing) == {"orders", "latency", "queue_depth"}
    assert all(series["points"] == [] for series in listing.values())
    orders = series_by_name(live.get("/api/otlp/metrics", params={"name": "orders"}).json())["orders"]
    assert (orders["type"], orders["monotonic"], orders["attributes"]) == ("sum", True, {"region": "eu"})
    assert [point["value"] for point in orders["points"]] == [3.0]
    assert orders["resource"]["service.name"] == "stock-app"
    (latency,) = live.get("/api/otlp/metrics", params={"name": "latency"}).json()["series"]
    (point,) = latency["points"]
    assert (point["count"], point["sum"], point["min"], point["max"]) == (1, 12.0, 12.0, 12.0)
    assert sum(point["bucket_counts"]) == 1
    assert len(point["bucket_counts"]) == len(point["explicit_bounds"]) + 1
    (gauge,) = live.get("/api/otlp/metrics", params={"name": "queue_depth"}).json()["series"]
    assert (gauge["type"], [p["value"] for p in gauge["points"]]) == ("gauge", [7.0])


def test_a_retried_export_is_stored_once(live: LiveReceiver) -> None:
    """The same metrics and log request sent twice are duplicates the second time."""
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    request.CopyFrom(_metrics_request())
    for _ in range(2):
        _call(live, METRICS_METHOD, request.SerializeToString())
    stats = live.get("/api/otlp/stats").json()["metric_points"]
    assert (stats["accepted"], stats["duplicates"]) == (3, 3)
    (orders,) = live.get("/api/otlp/metrics", params={"name": "orders"}).json()["series"]
    assert len(orders["points"]) == 1


def _metrics_request() -> Any:
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

    return encode_metrics(make_metrics())


def _json(value: Any) -> bytes:
    import json

    return json.dumps(value).encode()


@pytest.mark.parametrize("method", [TRACE_METHOD, LOGS_METHOD, METRICS_METHOD])
def test_a_malformed_body_is_invalid_argument_naming_the_problem(live: LiveReceiver, method: str) -> None:
    """Bytes that are not the service's request are INVALID_ARGUMENT with the decoder's sentence; nothing stored."""
    with pytest.raises(grpc.RpcError) as caught:
        _call(live, method, b"\xff\xff\xff")
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "the body is not an OTLP protobuf Export" in str(caught.value.details())
    stats = live.get("/api/otlp/stats").json()
    assert sum(signal["refused_requests"] for name, signal in stats.items() if name != "forwarding") == 1


def test_partial_success_names_the_rejected_spans(live: LiveReceiver) -> None:
    """A request with one bad span stores the good one and answers partial_success naming the bad one."""
    good = trace_pb2.Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="good", start_time_unix_nano=1)
    bad = trace_pb2.Span(trace_id=b"\x00" * 16, span_id=b"\x03" * 8, name="bad", start_time_unix_nano=1)
    request = trace_service_pb2.ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.extend([good, bad])
    answer = trace_service_pb2.ExportTraceServiceResponse.FromString(
        _call(live, TRACE_METHOD, request.SerializeToString())
    )
    assert answer.partial_success.rejected_spans == 1
    assert "resourceSpans[0].scopeSpans[0].spans[1]: traceId is all zero" in answer.partial_success.error_message
    assert live.trace("01" * 16)["span_count"] == 1


def test_a_span_that_cannot_be_decoded_is_named_and_its_sibling_stored(live: LiveReceiver) -> None:
    """Over gRPC too, a span the decoder cannot read (a name that is not UTF-8) is rejected alone, not the call."""
    good = trace_pb2.Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="good", start_time_unix_nano=1)
    bad = trace_pb2.Span(trace_id=b"\x01" * 16, span_id=b"\x03" * 8, name="BADNAME!", start_time_unix_nano=1)
    request = trace_service_pb2.ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.extend([bad, good])
    body = request.SerializeToString().replace(b"BADNAME!", b"\xff" * 8)
    answer = trace_service_pb2.ExportTraceServiceResponse.FromString(_call(live, TRACE_METHOD, body))
    assert answer.partial_success.rejected_spans == 1
    assert "resourceSpans[0].scopeSpans[0].spans[0]: cannot be decoded:" in answer.partial_success.error_message
    assert [span["name"] for span in live.trace("01" * 16)["spans"]] == ["good"]


def test_partial_success_of_logs(live: LiveReceiver) -> None:
    """A log record with a short span id is refused and named; its sibling is stored."""
    request = logs_service_pb2.ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    records.add(time_unix_nano=5, trace_id=b"\x01" * 16, span_id=b"\x02" * 4).body.string_value = "bad"
    records.add(time_unix_nano=6, trace_id=b"\x01" * 16, span_id=b"\x02" * 8).body.string_value = "good"
    answer = logs_service_pb2.ExportLogsServiceResponse.FromString(
        _call(live, LOGS_METHOD, request.SerializeToString())
    )
    assert answer.partial_success.rejected_log_records == 1
    assert "logRecords[0]: spanId is 4 bytes, not 8" in answer.partial_success.error_message
    records_stored = live.get("/api/otlp/logs", params={"trace_id": "01" * 16}).json()["records"]
    assert [record["body"] for record in records_stored] == ["good"]


def test_an_oversized_message_is_resource_exhausted(tmp_path: Path) -> None:
    """A message over max_inflated_bytes is refused by gRPC with RESOURCE_EXHAUSTED; smaller ones still pass."""
    config = _grpc_config(tmp_path, limits=IngestLimits(max_body_bytes=4096, max_inflated_bytes=4096))
    with receiver_running(config) as live:
        request = trace_service_pb2.ExportTraceServiceRequest()
        span = request.resource_spans.add().scope_spans.add().spans.add()
        span.trace_id, span.span_id, span.name = b"\x01" * 16, b"\x02" * 8, "x" * 8000
        with pytest.raises(grpc.RpcError) as caught:
            _call(live, TRACE_METHOD, request.SerializeToString())
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        span.name = "small"
        _call(live, TRACE_METHOD, request.SerializeToString())
        assert live.trace("01" * 16)["span_count"] == 1


def test_a_wrong_api_key_is_unauthenticated(tmp_path: Path) -> None:
    """With API keys on, a call without a valid bearer key is UNAUTHENTICATED; a valid one writes to its project."""
    token = "k-" + "7" * 30
    config = _grpc_config(tmp_path, api_keys={token: "shop"})
    spans, trace_id, _ids = make_spans()
    with receiver_running(config) as live:
        for headers in ((), (("authorization", "Bearer wrong-key-0000000000000000"),)):
            exporter = OTLPSpanExporter(endpoint=_target(live), insecure=True, headers=headers)
            try:
                with pytest.raises(grpc.RpcError) as caught:
                    _call(live, TRACE_METHOD, b"", metadata=headers)
                assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
                assert "wrong-key" not in str(caught.value.details())
                assert exporter.export(spans) is SpanExportResult.FAILURE
            finally:
                exporter.shutdown()
        exporter = OTLPSpanExporter(
            endpoint=_target(live), insecure=True, headers=(("authorization", f"Bearer {token}"),)
        )
        try:
            assert exporter.export(spans) is SpanExportResult.SUCCESS
        finally:
            exporter.shutdown()
        doc = live.get(f"/api/traces/{trace_id}", headers={"authorization": f"Bearer {token}"}).json()
        assert {span["project"] for span in doc["spans"]} == {"shop"}


def test_the_grpc_port_closes_with_the_receiver(tmp_path: Path) -> None:
    """Stopping the receiver stops its gRPC server: a later call cannot connect."""
    with receiver_running(_grpc_config(tmp_path)) as live:
        _call(live, TRACE_METHOD, b"")
    with pytest.raises(grpc.RpcError) as caught, grpc.insecure_channel(_target(live)) as channel:
        stub: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(TRACE_METHOD)
        stub(b"", timeout=2)
    assert caught.value.code() in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def test_what_arrives_over_grpc_is_forwarded_over_http(tmp_path: Path) -> None:
    """With forwarding on, spans and log records received over gRPC reach the upstream (OTLP/HTTP) too."""
    upstream_config = ReceiverConfig(db_path=tmp_path / "upstream.db", sweep_interval_s=0)
    with receiver_running(upstream_config) as upstream:
        with receiver_running(_grpc_config(tmp_path, forward_endpoint=upstream.url)) as front:
            spans, trace_id, _ids = make_spans()
            exporter = OTLPSpanExporter(endpoint=_target(front), insecure=True)
            try:
                assert exporter.export(spans) is SpanExportResult.SUCCESS
            finally:
                exporter.shutdown()
            logs = logs_service_pb2.ExportLogsServiceRequest()
            record = logs.resource_logs.add().scope_logs.add().log_records.add(time_unix_nano=9)
            record.trace_id, record.body.string_value = bytes.fromhex(trace_id), "forwarded line"
            _call(front, LOGS_METHOD, logs.SerializeToString())
            front.wait_for("/api/otlp/stats", lambda d: d["forwarding"]["sent"] == 2)
        assert upstream.trace(trace_id)["span_count"] == 2
        (line,) = upstream.get("/api/otlp/logs", params={"trace_id": trace_id}).json()["records"]
        assert line["body"] == "forwarded line"
