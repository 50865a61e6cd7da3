"""The SDK's hand-written OTLP protobuf encoding agrees with the official proto classes."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from flowledger.instrument.delivery._otlp_protobuf import (
    OtlpProtocol,
    encode_export,
    encode_protobuf,
    protocol_from_env,
)
from flowledger.instrument.delivery._otlp_spans import RunMemo, export_request, span_from_event
from flowledger.receiver.otlp._decode import OtlpFormat, OtlpSignal, decode_request
from tests.otel._support import LiveReceiver

_hex = st.sampled_from("0123456789abcdef")
_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
_scalar = st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | _text


@st.composite
def finished_events(draw: st.DrawFn) -> dict[str, Any]:
    """Any run_finished or node_finished event the SDK could emit."""
    failed = draw(st.booleans())
    data: dict[str, Any] = {
        "trace_id": "".join(draw(st.lists(_hex, min_size=32, max_size=32))),
        "span_id": "".join(draw(st.lists(_hex, min_size=16, max_size=16))),
        "started_at": draw(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1))).isoformat()
        + "Z",
        "duration_ms": draw(st.floats(min_value=0, max_value=1e9, allow_nan=False)),
        "status": "failed" if failed else draw(st.sampled_from(["succeeded", "skipped"])),
        "cost": {"tokens": draw(st.integers(0, 2**62)), "usd": draw(st.floats(0, 1e6, allow_nan=False))},
        "definition_sha256": draw(st.none() | _text),
        "location": {"file": draw(_text), "line": draw(st.integers(-(2**70), 2**70))},
        "effect": draw(st.none() | st.booleans()),
    }
    if failed:
        data["error"] = {"type": draw(_text), "message": draw(_text), "stack": draw(st.none() | _text)}
    if draw(st.booleans()):
        data["parent_span_id"] = "".join(draw(st.lists(_hex, min_size=16, max_size=16)))
    run_id = draw(_text)
    if draw(st.booleans()):
        data.update(node_id=draw(_text), attempt=draw(st.integers(0, 2**40)), item=draw(st.none() | st.integers()))
        kind = "node_finished"
    else:
        data.update(workflow_id=draw(_text), workflow_name=draw(st.none() | _text), dry_run=draw(st.booleans()))
        kind = "run_finished"
    return {"kind": kind, "run_id": run_id, "data": data}


def _official(body: bytes) -> Any:
    message = ExportTraceServiceRequest()
    message.ParseFromString(body)
    return message


@settings(max_examples=80, deadline=None)
@given(st.lists(finished_events(), min_size=1, max_size=4), _text)
def test_protobuf_matches_the_json_form(events: list[dict[str, Any]], service: str) -> None:
    """Every span the SDK builds encodes to protobuf that the official classes read as its JSON form."""
    spans = [span for span in (span_from_event(e, RunMemo()) for e in events) if span is not None]
    request = export_request(spans, service_name=service)
    from_json = decode_request(OtlpSignal.TRACES, json.dumps(request).encode(), OtlpFormat.JSON)
    assert _official(encode_protobuf(request)) == from_json


@given(_scalar)
def test_every_attribute_value_kind_round_trips(value: Any) -> None:
    """Booleans, int64s (negative too), doubles and strings, default values included, survive encoding."""
    attribute = (
        {"boolValue": value}
        if isinstance(value, bool)
        else {"intValue": str(value)}
        if isinstance(value, int)
        else {"doubleValue": value}
        if isinstance(value, float)
        else {"stringValue": value}
    )
    span = {
        "traceId": "ab" * 16,
        "spanId": "cd" * 8,
        "name": "",
        "kind": 0,
        "startTimeUnixNano": "0",
        "endTimeUnixNano": str(2**64 - 1),
        "attributes": [
            {"key": "v", "value": attribute},
            {"key": "list", "value": {"arrayValue": {"values": [attribute, {"stringValue": "x"}]}}},
            {"key": "map", "value": {"kvlistValue": {"values": [{"key": "k", "value": attribute}]}}},
        ],
        "status": {"code": 0},
    }
    request = {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": [span]}]}]}
    from_json = decode_request(OtlpSignal.TRACES, json.dumps(request).encode(), OtlpFormat.JSON)
    assert _official(encode_protobuf(request)) == from_json


def test_equal_attribute_values_of_other_kinds_encode_apart() -> None:
    """An attribute seen before with a value equal in Python but of another kind (1, True, 1.0, -0.0) keeps its kind."""
    values: list[dict[str, Any]] = [
        {"intValue": "1"},
        {"boolValue": True},
        {"doubleValue": 1.0},
        {"stringValue": "1"},
        {"doubleValue": 0.0},
        {"doubleValue": -0.0},
        {"intValue": "0"},
        {"boolValue": False},
    ]
    for _ in range(2):  # the second time, what was encoded before may be reused
        for value in values:
            request = {"resourceSpans": [{"resource": {"attributes": [{"key": "v", "value": value}]}}]}
            from_json = decode_request(OtlpSignal.TRACES, json.dumps(request).encode(), OtlpFormat.JSON)
            assert encode_protobuf(request) == from_json.SerializeToString()


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, OtlpProtocol.HTTP_PROTOBUF),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, OtlpProtocol.HTTP_JSON),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, None),
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": " HTTP/JSON "}, OtlpProtocol.HTTP_JSON),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, OtlpProtocol.HTTP_PROTOBUF),
    ],
)
def test_protocol_comes_from_the_otel_variables(environ: dict[str, str], expected: OtlpProtocol | None) -> None:
    """The traces-specific variable wins over the general one; protobuf is the default, as the spec says."""
    assert protocol_from_env(environ) is (expected or OtlpProtocol.HTTP_PROTOBUF)


@pytest.mark.parametrize("protocol", list(OtlpProtocol))
def test_the_receiver_stores_both_encodings(receiver: LiveReceiver, protocol: OtlpProtocol) -> None:
    """An SDK export in either protocol is stored by the receiver with its attributes."""
    event = {
        "kind": "node_finished",
        "run_id": "r-1",
        "data": {
            "trace_id": "12" * 16,
            "span_id": "34" * 8,
            "parent_span_id": "56" * 8,
            "node_id": "fetch",
            "attempt": 1,
            "status": "succeeded",
            "started_at": "2026-11-22T07:00:00Z",
            "duration_ms": 5,
        },
    }
    span = span_from_event(event, RunMemo())
    assert span is not None
    body, content_type = encode_export(export_request([span], service_name="shop"), protocol)
    answer = receiver.post("/v1/traces", body, content_type)
    assert answer.status_code == 200
    (stored,) = receiver.trace("12" * 16)["spans"]
    assert stored["parent_span_id"] == "56" * 8
    assert stored["attributes"]["flowledger.node.id"] == "fetch"
    assert stored["service_name"] == "shop"


@given(st.integers(0, 2**63 - 1), _text)
def test_rejected_spans_is_read_from_either_answer(count: int, message: str) -> None:
    """The SDK reads partial_success.rejected_spans from a protobuf or JSON ExportTraceServiceResponse."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    from flowledger.instrument.delivery._otlp_protobuf import rejected_spans

    answer = ExportTraceServiceResponse()
    answer.partial_success.rejected_spans = count
    answer.partial_success.error_message = message
    assert rejected_spans(answer.SerializeToString(), "application/x-protobuf") == count
    as_json = json.dumps(json_format.MessageToDict(answer)).encode()
    assert rejected_spans(as_json, "application/json; charset=utf-8") == count


def test_rejected_spans_of_empty_or_broken_answers_is_zero() -> None:
    """An empty success, or an answer that cannot be read, counts no rejected span."""
    from flowledger.instrument.delivery._otlp_protobuf import rejected_spans

    assert rejected_spans(b"", "application/x-protobuf") == 0
    assert rejected_spans(b"", "application/json") == 0
    assert rejected_spans(b"\x0a\xff", "application/x-protobuf") == 0
    assert rejected_spans(b"\x0f", "application/x-protobuf") == 0
    assert rejected_spans(b"<html>", "text/html") == 0
