"""OTLP/HTTP logs and metrics: stored, linked to runs and node attempts, queried; from the stock HTTP exporters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

from flowledger.receiver._config import ReceiverConfig
from tests.otel._support import LiveReceiver, receiver_running, run_events
from tests.receiver.otlp._stock import inside_span, make_metrics, series_by_name, stock_logger

JSON = "application/json"
PROTOBUF = "application/x-protobuf"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveReceiver]:
    """A receiver whose linker looks for late runs often."""
    config = ReceiverConfig(db_path=tmp_path / "flowledger.db", sweep_interval_s=0, otlp_link_interval_s=0.1)
    with receiver_running(config) as receiver:
        yield receiver


def _post_events(live: LiveReceiver, events: list[dict[str, Any]]) -> None:
    assert live.post("/v1/events", json.dumps({"events": events}).encode(), JSON).status_code == 200


def test_records_that_come_before_their_run_are_linked_once_it_arrives(live: LiveReceiver) -> None:
    """Stock HTTP-exported records of a node's span, sent before the run's events, join the attempt's lines later."""
    trace_id, run_span, node_span = "cd" * 16, "03" * 8, "04" * 8
    run_id, events = run_events(trace_id, run_span, node_span)
    exporter = OTLPLogExporter(endpoint=f"{live.url}/v1/logs")
    with stock_logger(exporter) as logger, inside_span(trace_id, node_span):
        logger.error("charge refused")
    assert live.get("/api/otlp/logs", params={"trace_id": trace_id}).json()["records"][0]["run_id"] is None
    _post_events(live, events)
    detail = live.wait_for(f"/api/runs/{run_id}", lambda d: bool(d["nodes"] and d["nodes"][0]["logs"]))
    (line,) = detail["nodes"][0]["logs"]
    assert (line["message"], line["level"], line["source"], line["span_id"]) == (
        "charge refused",
        "ERROR",
        "otlp",
        node_span,
    )
    (record,) = live.get("/api/otlp/logs", params={"run_id": run_id}).json()["records"]
    assert (record["node_id"], record["attempt"]) == ("fetch", 1)


def test_otlp_json_logs_are_stored_with_partial_success(live: LiveReceiver) -> None:
    """OTLP JSON (hex ids) records are stored; a record with a zero trace id is refused and named in JSON."""
    trace_id, run_span, node_span = "ef" * 16, "05" * 8, "06" * 8
    run_id, events = run_events(trace_id, run_span, node_span)
    _post_events(live, events)
    records = [
        {"timeUnixNano": "1700000000000000000", "severityNumber": 9, "body": {"stringValue": "hello"}},
        {"traceId": "00" * 16, "spanId": node_span, "body": {"stringValue": "zero"}},
        {
            "timeUnixNano": "1700000000000000001",
            "traceId": trace_id,
            "spanId": node_span,
            "severityNumber": 17,
            "body": {"kvlistValue": {"values": [{"key": "order", "value": {"intValue": "7"}}]}},
        },
    ]
    body = {"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]}
    answer = live.post("/v1/logs", json.dumps(body).encode(), JSON)
    assert answer.status_code == 200
    partial = answer.json()["partialSuccess"]
    assert partial["rejectedLogRecords"] == "1"
    assert "logRecords[1]: traceId is all zero" in partial["errorMessage"]
    (record,) = live.get("/api/otlp/logs", params={"run_id": run_id}).json()["records"]
    assert (record["body"], record["node_id"], record["severity_number"]) == ({"order": 7}, "fetch", 17)
    (fetch,) = live.get(f"/api/runs/{run_id}").json()["nodes"]
    assert [(line["message"], line["level"]) for line in fetch["logs"]] == [('{"order":7}', "ERROR")]
    stats = live.get("/api/otlp/stats").json()["log_records"]
    assert (stats["accepted"], stats["rejected"]) == (2, 1)


def test_log_queries_validate_their_parameters(live: LiveReceiver) -> None:
    """A bad trace id, limit or unknown parameter is a 400 naming it; an unknown run is a 404."""
    assert "trace_id" in live.get("/api/otlp/logs", params={"trace_id": "xyz"}).json()["error"]
    assert "limit" in live.get("/api/otlp/logs", params={"limit": "0"}).json()["error"]
    assert "'level'" in live.get("/api/otlp/logs", params={"level": "x"}).json()["error"]
    assert live.get("/api/otlp/logs", params={"run_id": "nope"}).status_code == 404
    assert live.get("/api/otlp/metrics", params={"since": "yesterday"}).status_code == 400


@pytest.mark.parametrize("via", ["stock-protobuf", "json"])
def test_metrics_over_http_become_series(live: LiveReceiver, via: str) -> None:
    """Metrics from the stock HTTP exporter (protobuf) or as OTLP JSON are stored as the same series."""
    if via == "json":
        from google.protobuf import json_format
        from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

        body = json.dumps(json_format.MessageToDict(encode_metrics(make_metrics()))).encode()
        assert live.post("/v1/metrics", body, JSON).json() == {}
    else:
        exporter = OTLPMetricExporter(endpoint=f"{live.url}/v1/metrics")
        try:
            assert exporter.export(make_metrics()).name == "SUCCESS"
        finally:
            exporter.shutdown()
    listing = series_by_name(live.get("/api/otlp/metrics").json())
    assert set(listing) == {"orders", "latency", "queue_depth"}
    (orders,) = live.get("/api/otlp/metrics", params={"name": "orders"}).json()["series"]
    assert (orders["unit"], orders["description"], orders["points"][0]["value"]) == ("1", "orders taken", 3.0)
    assert orders["scope"] == {"name": "tests.otel", "version": "1.0"}
    future = live.get("/api/otlp/metrics", params={"name": "orders", "since": "2999-01-01T00:00:00Z"}).json()
    assert future["series"][0]["points"] == []


def test_bad_data_points_are_refused_and_named(live: LiveReceiver) -> None:
    """A point without a value, one without a time and a histogram whose buckets do not fit are refused."""
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    metrics = request.resource_metrics.add().scope_metrics.add().metrics
    gauge = metrics.add(name="g").gauge
    gauge.data_points.add(time_unix_nano=5)
    gauge.data_points.add(as_int=3)
    gauge.data_points.add(time_unix_nano=6, as_double=float("nan"))
    histogram = metrics.add(name="h").histogram
    histogram.data_points.add(time_unix_nano=5, count=1, bucket_counts=[1], explicit_bounds=[1.0, 2.0])
    answer = metrics_service_pb2.ExportMetricsServiceResponse.FromString(
        live.post("/v1/metrics", request.SerializeToString(), PROTOBUF).content
    )
    assert answer.partial_success.rejected_data_points == 3
    message = answer.partial_success.error_message
    assert "metrics[0].gauge.dataPoints[0]: the data point has no value" in message
    assert "metrics[0].gauge.dataPoints[1]: timeUnixNano is missing" in message
    assert "metrics[1].histogram.dataPoints[0]: bucketCounts has 1 entries for 2 explicitBounds" in message
    (gauge_series,) = live.get("/api/otlp/metrics", params={"name": "g"}).json()["series"]
    assert gauge_series["points"][0]["value"] == "NaN"


def test_exponential_histograms_and_summaries_keep_their_buckets_and_quantiles(live: LiveReceiver) -> None:
    """An exponential histogram keeps scale, zero count and buckets; a summary its quantiles; both with their times."""
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    metrics = request.resource_metrics.add().scope_metrics.add().metrics
    exponential = metrics.add(name="sizes", unit="By").exponential_histogram
    exponential.aggregation_temporality = 2
    point = exponential.data_points.add(time_unix_nano=7, start_time_unix_nano=3, count=4, sum=10.0, scale=1)
    point.zero_count = 1
    point.positive.offset = 2
    point.positive.bucket_counts.extend([2, 1])
    summary = metrics.add(name="latency_summary").summary
    quantiles = summary.data_points.add(time_unix_nano=8, count=3, sum=6.0).quantile_values
    quantiles.add(quantile=0.5, value=2.0)
    quantiles.add(quantile=0.99, value=float("inf"))
    answer = metrics_service_pb2.ExportMetricsServiceResponse.FromString(
        live.post("/v1/metrics", request.SerializeToString(), PROTOBUF).content
    )
    assert answer.partial_success.rejected_data_points == 0
    (sizes,) = live.get("/api/otlp/metrics", params={"name": "sizes"}).json()["series"]
    assert (sizes["type"], sizes["temporality"], sizes["monotonic"]) == ("exponential_histogram", 2, None)
    (bucketed,) = sizes["points"]
    assert (bucketed["time_unix_nano"], bucketed["start_time_unix_nano"], bucketed["scale"]) == (7, 3, 1)
    assert (bucketed["zero_count"], bucketed["positive"]) == (1, {"offset": 2, "bucket_counts": [2, 1]})
    assert (bucketed["min"], bucketed["sum"]) == (None, 10.0)
    (latency,) = live.get("/api/otlp/metrics", params={"name": "latency_summary"}).json()["series"]
    assert latency["points"][0]["quantile_values"] == [
        {"quantile": 0.5, "value": 2.0},
        {"quantile": 0.99, "value": "Infinity"},
    ]
