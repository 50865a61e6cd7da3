"""OTLP values the store must refuse or keep JSON-safe: quantiles, non-finite doubles, event times, links, enums
(span kinds and status codes, log severity numbers, metric aggregation temporalities)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from flowledger.receiver._config import ReceiverConfig
from flowledger.receiver.otlp._decode import OtlpFormat, OtlpSignal, decode_request
from tests.otel._support import LiveReceiver, free_port, receiver_running

JSON = "application/json"
PROTOBUF = "application/x-protobuf"
TRACE_ID = "ab" * 16
GOOD_SPAN = "01" * 8
BAD_SPAN = "02" * 8


def _summary_points(quantile: Any) -> list[dict[str, Any]]:
    good = {"timeUnixNano": "1700000000000000001", "count": "1", "quantileValues": [{"quantile": 0.5, "value": 1}]}
    bad = {"timeUnixNano": "1700000000000000000", "count": "3", "quantileValues": [{"quantile": quantile, "value": 1}]}
    return [bad, good]


def _metrics_body(points: list[dict[str, Any]], fmt: str) -> bytes:
    doc = {"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"name": "s", "summary": {"dataPoints": points}}]}]}]}
    if fmt == JSON:
        return json.dumps(doc).encode()
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    json_format.ParseDict(doc, request)
    return bytes(request.SerializeToString())


@pytest.mark.parametrize("fmt", [JSON, PROTOBUF])
@pytest.mark.parametrize("quantile", ["NaN", "Infinity", -0.1, 1.5])
def test_a_summary_quantile_outside_0_1_is_a_named_rejected_point(
    receiver: LiveReceiver, fmt: str, quantile: Any
) -> None:
    """A NaN, infinite or out-of-range quantile rejects its point by name; its sibling is stored; GET answers 200."""
    answer = receiver.post("/v1/metrics", _metrics_body(_summary_points(quantile), fmt), fmt)
    assert answer.status_code == 200
    partial = metrics_service_pb2.ExportMetricsServiceResponse()
    if fmt == JSON:
        json_format.ParseDict(answer.json(), partial)
    else:
        partial.ParseFromString(answer.content)
    assert partial.partial_success.rejected_data_points == 1
    assert "summary.dataPoints[0]: quantileValues[0].quantile is" in partial.partial_success.error_message
    got = receiver.get("/api/otlp/metrics", params={"name": "s"})
    assert got.status_code == 200, got.text
    (series,) = got.json()["series"]
    assert [p["quantile_values"] for p in series["points"]] == [[{"quantile": 0.5, "value": 1.0}]]


def test_non_finite_doubles_everywhere_are_answered_as_otlp_json_strings(receiver: LiveReceiver) -> None:
    """NaN and infinities in values, sums, bounds and attribute doubles are stored and answered as "NaN"/"Infinity"."""
    nan = {"key": "d", "value": {"doubleValue": "NaN"}}
    ninf = {"key": "n", "value": {"doubleValue": "-Infinity"}}
    metrics = [
        {"name": "g", "gauge": {"dataPoints": [{"timeUnixNano": "1", "asDouble": "NaN", "attributes": [nan]}]}},
        {"name": "c", "sum": {"dataPoints": [{"timeUnixNano": "1", "asDouble": "Infinity"}]}},
        {
            "name": "h",
            "histogram": {
                "dataPoints": [
                    {
                        "timeUnixNano": "1",
                        "count": "1",
                        "sum": "NaN",
                        "bucketCounts": ["0", "1"],
                        "explicitBounds": ["-Infinity"],
                    }
                ]
            },
        },
        {
            "name": "q",
            "summary": {
                "dataPoints": [
                    {
                        "timeUnixNano": "1",
                        "count": "1",
                        "sum": "Infinity",
                        "quantileValues": [{"quantile": 1, "value": "NaN"}],
                    }
                ]
            },
        },
    ]
    doc = {"resourceMetrics": [{"resource": {"attributes": [ninf]}, "scopeMetrics": [{"metrics": metrics}]}]}
    answer = receiver.post("/v1/metrics", json.dumps(doc).encode(), JSON)
    assert answer.status_code == 200
    assert "partialSuccess" not in answer.json()
    points = {}
    for name in ("g", "c", "h", "q"):
        got = receiver.get("/api/otlp/metrics", params={"name": name})
        assert got.status_code == 200, got.text
        (series,) = got.json()["series"]
        assert series["resource"] == {"n": "-Infinity"}
        points[name] = series["points"][0]
    assert (points["g"]["value"], points["c"]["value"]) == ("NaN", "Infinity")
    assert (points["h"]["sum"], points["h"]["explicit_bounds"]) == ("NaN", ["-Infinity"])
    assert (points["q"]["sum"], points["q"]["quantile_values"]) == ("Infinity", [{"quantile": 1.0, "value": "NaN"}])
    assert receiver.get("/api/otlp/metrics", params={"name": "g"}).json()["series"][0]["attributes"] == {"d": "NaN"}
    span = {
        "traceId": TRACE_ID,
        "spanId": GOOD_SPAN,
        "name": "x",
        "startTimeUnixNano": "1",
        "endTimeUnixNano": "2",
        "attributes": [nan],
        "events": [{"timeUnixNano": "1", "name": "e", "attributes": [ninf]}],
    }
    traces = {"resourceSpans": [{"resource": {"attributes": [nan]}, "scopeSpans": [{"spans": [span]}]}]}
    assert receiver.post("/v1/traces", json.dumps(traces).encode(), JSON).status_code == 200
    (stored,) = receiver.trace(TRACE_ID)["spans"]
    assert (stored["attributes"], stored["resource"], stored["events"][0]["attributes"]) == (
        {"d": "NaN"},
        {"d": "NaN"},
        {"n": "-Infinity"},
    )
    record = {"timeUnixNano": "1", "traceId": TRACE_ID, "body": {"doubleValue": "Infinity"}, "attributes": [nan]}
    logs = {"resourceLogs": [{"scopeLogs": [{"logRecords": [record]}]}]}
    assert receiver.post("/v1/logs", json.dumps(logs).encode(), JSON).status_code == 200
    got = receiver.get("/api/otlp/logs", params={"trace_id": TRACE_ID})
    assert got.status_code == 200, got.text
    (log,) = got.json()["records"]
    assert (log["body"], log["attributes"]) == ("Infinity", {"d": "NaN"})


def _span(**fields: Any) -> dict[str, Any]:
    span = {"traceId": TRACE_ID, "spanId": BAD_SPAN, "name": "bad", "startTimeUnixNano": "1", "endTimeUnixNano": "2"}
    return {**span, **fields}


BAD_SPANS = {
    "event time": (_span(events=[{"timeUnixNano": str(2**64 - 1), "name": "e"}]), "events[0].timeUnixNano is 2**63"),
    "link trace id short": (_span(links=[{"traceId": "ab" * 8, "spanId": GOOD_SPAN}]), "links[0].traceId is 8 bytes"),
    "link trace id zero": (_span(links=[{"traceId": "00" * 16, "spanId": GOOD_SPAN}]), "links[0].traceId is all zero"),
    "link span id long": (_span(links=[{"traceId": TRACE_ID, "spanId": "ab" * 16}]), "links[0].spanId is 16 bytes"),
    "link span id zero": (_span(links=[{"traceId": TRACE_ID, "spanId": "00" * 8}]), "links[0].spanId is all zero"),
    "kind": (_span(kind=99), "kind is 99"),
    "status": (_span(status={"code": 77}), "status.code is 77"),
}


@pytest.mark.parametrize("fmt", [JSON, PROTOBUF])
@pytest.mark.parametrize("case", list(BAD_SPANS))
def test_bad_event_times_link_ids_and_enums_reject_the_span_by_name(
    receiver: LiveReceiver, fmt: str, case: str
) -> None:
    """An event time past 2**63, a bad link id or an unknown kind/status code rejects the span; its sibling stays."""
    bad, expected = BAD_SPANS[case]
    good = _span(spanId=GOOD_SPAN, name="good")
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [good, bad]}]}]}
    answer = receiver.post("/v1/traces", _otlp_body(OtlpSignal.TRACES, doc, fmt), fmt)
    response = _answered(answer, fmt, trace_service_pb2.ExportTraceServiceResponse())
    assert response.partial_success.rejected_spans == 1
    assert f"spans[1]: {expected}" in response.partial_success.error_message
    assert [span["name"] for span in receiver.trace(TRACE_ID)["spans"]] == ["good"]


_Response = TypeVar("_Response", bound=Message)


def _answered(answer: httpx.Response, fmt: str, response: _Response) -> _Response:
    """``response`` filled from a 200 answer in ``fmt`` (OTLP JSON or protobuf)."""
    assert answer.status_code == 200, answer.text
    if fmt == JSON:
        json_format.ParseDict(answer.json(), response)
    else:
        response.ParseFromString(answer.content)
    return response


def _otlp_body(signal: OtlpSignal, doc: dict[str, Any], fmt: str) -> bytes:
    """``doc`` (OTLP JSON) as the body of ``fmt``: as is, or the same request in protobuf."""
    if fmt == JSON:
        return json.dumps(doc).encode()
    return bytes(decode_request(signal, json.dumps(doc).encode(), OtlpFormat.JSON).SerializeToString())


@pytest.mark.parametrize("fmt", [JSON, PROTOBUF])
@pytest.mark.parametrize("severity", [25, 99, -1])
def test_a_severity_number_outside_the_enum_rejects_the_record_by_name(
    receiver: LiveReceiver, fmt: str, severity: int
) -> None:
    """A severityNumber outside 0..24 rejects its record by name; its sibling (severity 24) is stored."""
    good = {"timeUnixNano": "1", "traceId": TRACE_ID, "severityNumber": 24, "body": {"stringValue": "good"}}
    bad = {"timeUnixNano": "2", "traceId": TRACE_ID, "severityNumber": severity, "body": {"stringValue": "bad"}}
    doc = {"resourceLogs": [{"scopeLogs": [{"logRecords": [good, bad]}]}]}
    answer = receiver.post("/v1/logs", _otlp_body(OtlpSignal.LOGS, doc, fmt), fmt)
    response = _answered(answer, fmt, logs_service_pb2.ExportLogsServiceResponse())
    assert response.partial_success.rejected_log_records == 1
    expected = f"logRecords[1]: severityNumber is {severity}, not a SeverityNumber (0 to 24)"
    assert expected in response.partial_success.error_message
    got = receiver.get("/api/otlp/logs", params={"trace_id": TRACE_ID})
    assert got.status_code == 200, got.text
    assert [(r["body"], r["severity_number"]) for r in got.json()["records"]] == [("good", 24)]
    stats = receiver.get("/api/otlp/stats").json()["log_records"]
    assert (stats["accepted"], stats["rejected"], stats["refused_requests"]) == (1, 1, 0)


def _temporal_metric(name: str, kind: str, temporality: int, points: int) -> dict[str, Any]:
    """A sum or histogram metric of ``points`` valid data points and the given aggregationTemporality."""
    point: dict[str, Any] = {"asInt": "1"} if kind == "sum" else {"count": "1", "bucketCounts": ["1"]}
    data_points = [{"timeUnixNano": str(1 + p), **point} for p in range(points)]
    return {"name": name, kind: {"aggregationTemporality": temporality, "dataPoints": data_points}}


@pytest.mark.parametrize("fmt", [JSON, PROTOBUF])
@pytest.mark.parametrize("kind", ["sum", "histogram"])
@pytest.mark.parametrize("temporality", [3, 7, -1])
def test_an_aggregation_temporality_outside_the_enum_rejects_the_metrics_points_by_name(
    receiver: LiveReceiver, fmt: str, kind: str, temporality: int
) -> None:
    """An aggregationTemporality outside 0..2 rejects every point of its metric, named once; other metrics stay."""
    metrics = [_temporal_metric("good", kind, 2, 1), _temporal_metric("bad", kind, temporality, 2)]
    doc = {"resourceMetrics": [{"scopeMetrics": [{"metrics": metrics}]}]}
    answer = receiver.post("/v1/metrics", _otlp_body(OtlpSignal.METRICS, doc, fmt), fmt)
    response = _answered(answer, fmt, metrics_service_pb2.ExportMetricsServiceResponse())
    assert response.partial_success.rejected_data_points == 2
    expected = (
        f"2 data point(s) rejected: resourceMetrics[0].scopeMetrics[0].metrics[1].{kind}: aggregationTemporality is "
        f"{temporality}, not an AggregationTemporality (0 to 2) (its 2 data point(s) rejected)"
    )
    assert response.partial_success.error_message == expected
    got = receiver.get("/api/otlp/metrics")
    assert got.status_code == 200, got.text
    assert [(series["name"], series["temporality"]) for series in got.json()["series"]] == [("good", 2)]
    stats = receiver.get("/api/otlp/stats").json()["metric_points"]
    assert (stats["accepted"], stats["rejected"], stats["refused_requests"]) == (1, 2, 0)


def test_forwarding_log_lines_hide_the_password_and_query_values(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A failing upstream's log lines name the endpoint without its userinfo or query values."""
    endpoint = f"http://fwuser:FwPassw0rd@127.0.0.1:{free_port()}/base?token=S3cretTok"
    config = ReceiverConfig(db_path=tmp_path / "front.db", sweep_interval_s=0, forward_endpoint=endpoint)
    logs = logs_service_pb2.ExportLogsServiceRequest()
    logs.resource_logs.add().scope_logs.add().log_records.add(time_unix_nano=1)
    with caplog.at_level(logging.WARNING, logger="flowledger"), receiver_running(config) as front:
        assert front.post("/v1/logs", logs.SerializeToString(), PROTOBUF).status_code == 200
        stats = front.wait_for("/api/otlp/stats", lambda d: d["forwarding"]["failed"] == 1)
    lines = [record.getMessage() for record in caplog.records if "forwarding to" in record.getMessage()]
    assert lines, caplog.text
    for text in (caplog.text, json.dumps(stats)):
        for secret in ("FwPassw0rd", "fwuser", "S3cretTok"):
            assert secret not in text
    assert "127.0.0.1" in lines[0]
