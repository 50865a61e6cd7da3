"""An export request its decoder refuses as a whole: what can be read is stored, the rest named and counted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message
from google.rpc import status_pb2
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from flowledger._exceptions import OtlpBodyError
from flowledger.receiver._config import ReceiverConfig
from flowledger.receiver.otlp._decode import OtlpFormat, OtlpSignal, decode_request
from flowledger.receiver.otlp._framing import fields
from flowledger.receiver.otlp._salvage import LEVELS, decode_export, leaves
from tests.otel._support import LiveReceiver, receiver_running
from tests.receiver.otlp.test_bad_values import JSON, PROTOBUF, TRACE_ID, _answered

BROKEN = b"\xff" * 8
"""Eight bytes that are not UTF-8, put in place of an eight-letter marker in an encoded request."""


def _span(span_id: str, name: str) -> dict[str, Any]:
    return {"traceId": TRACE_ID, "spanId": span_id, "name": name, "startTimeUnixNano": "1", "endTimeUnixNano": "2"}


def _protobuf(signal: OtlpSignal, doc: dict[str, Any], *markers: str) -> bytes:
    """``doc`` as protobuf, each eight-letter marker's bytes replaced by bytes that are not UTF-8."""
    body = bytes(decode_request(signal, json.dumps(doc).encode(), OtlpFormat.JSON).SerializeToString())
    for marker in markers:
        assert len(marker) == len(BROKEN)
        assert body.count(marker.encode()) == 1
        body = body.replace(marker.encode(), BROKEN)
    return body


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field, encoded by hand (protobuf's own classes refuse to build a value deeper
    than their decoder reads)."""
    size, length = len(payload), b""
    while True:
        length += bytes([(size & 0x7F) | (0x80 if size > 0x7F else 0)])
        size >>= 7
        if not size:
            return bytes([number << 3 | 2]) + length + payload


def _deep_attribute(levels: int) -> bytes:
    """A span's attribute (field 9) whose value is nested ``levels`` key-value lists deep (three messages each)."""
    value = _field(1, b"leaf")  # AnyValue.string_value
    for _ in range(levels):
        pair = _field(1, b"k") + _field(2, value)  # KeyValue
        value = _field(6, _field(1, pair))  # AnyValue.kvlist_value: KeyValueList.values
    return _field(9, _field(1, b"nested") + _field(2, value))


def _response(answer: Any, fmt: str, response: Message) -> Any:
    return _answered(answer, fmt, response).partial_success


def _names(receiver: LiveReceiver) -> list[str]:
    return sorted(span["name"] for span in receiver.trace(TRACE_ID)["spans"])


def test_a_protobuf_span_that_is_not_utf_8_or_too_deep_is_rejected_alone(receiver: LiveReceiver) -> None:
    """A span with a string that is not UTF-8 and one nested past the decoder's depth limit are named and
    counted; the spans around them are stored, over HTTP, and the counters say so."""
    doc = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            _span("01" * 8, "first"),
                            _span("02" * 8, "BADNAME!"),
                            _span("03" * 8, "deep"),
                            _span("04" * 8, "last"),
                        ]
                    }
                ]
            }
        ]
    }
    request = trace_service_pb2.ExportTraceServiceRequest.FromString(_protobuf(OtlpSignal.TRACES, doc))
    encoded = [span.SerializeToString() for span in request.resource_spans[0].scope_spans[0].spans]
    encoded[2] += _deep_attribute(40)
    body = _field(1, _field(2, b"".join(_field(2, span) for span in encoded))).replace(b"BADNAME!", BROKEN)
    with pytest.raises(Exception, match="not an OTLP protobuf"):
        decode_request(OtlpSignal.TRACES, body, OtlpFormat.PROTOBUF)  # the whole request, read at once
    partial = _response(
        receiver.post("/v1/traces", body, PROTOBUF), PROTOBUF, trace_service_pb2.ExportTraceServiceResponse()
    )
    assert partial.rejected_spans == 2
    assert "2 span(s) rejected: resourceSpans[0].scopeSpans[0].spans[1]: cannot be decoded:" in partial.error_message
    assert "resourceSpans[0].scopeSpans[0].spans[2]: cannot be decoded:" in partial.error_message
    assert _names(receiver) == ["first", "last"]
    stats = receiver.get("/api/otlp/stats").json()["spans"]
    assert (stats["accepted"], stats["rejected"], stats["refused_requests"]) == (2, 2, 0)


def test_an_unreadable_resource_rejects_its_spans_and_keeps_the_others(receiver: LiveReceiver) -> None:
    """A resource whose own attributes cannot be decoded takes its spans with it (all of them counted); the next
    resource's spans are stored."""
    lost = {"attributes": [{"key": "service.name", "value": {"stringValue": "BADSERV!"}}]}
    doc = {
        "resourceSpans": [
            {"resource": lost, "scopeSpans": [{"spans": [_span("01" * 8, "a"), _span("02" * 8, "b")]}]},
            {"scopeSpans": [{"spans": [_span("03" * 8, "kept")]}]},
        ]
    }
    answer = receiver.post("/v1/traces", _protobuf(OtlpSignal.TRACES, doc, "BADSERV!"), PROTOBUF)
    partial = _response(answer, PROTOBUF, trace_service_pb2.ExportTraceServiceResponse())
    assert partial.rejected_spans == 2
    assert partial.error_message.startswith("2 span(s) rejected: resourceSpans[0]: cannot be decoded (its 2 span(s)):")
    assert _names(receiver) == ["kept"]


def test_json_spans_of_the_wrong_shape_are_rejected_alone(receiver: LiveReceiver) -> None:
    """OTLP/JSON: a span whose id is not hex or whose time is not a number is named, its siblings stored (the
    whole request was refused with 400 before)."""
    not_hex = {**_span("02" * 8, "not hex"), "traceId": "xyz"}
    not_time = {**_span("03" * 8, "not a time"), "startTimeUnixNano": "soon"}
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [_span("01" * 8, "good"), not_hex, not_time]}]}]}
    answer = receiver.post("/v1/traces", json.dumps(doc).encode(), JSON)
    partial = _response(answer, JSON, trace_service_pb2.ExportTraceServiceResponse())
    assert partial.rejected_spans == 2
    assert "spans[1]: cannot be decoded: traceId is 'xyz', not a hex id" in partial.error_message
    assert "spans[2]: cannot be decoded: Failed to parse startTimeUnixNano field" in partial.error_message
    assert _names(receiver) == ["good"]


def test_json_in_proto_names_and_a_list_of_the_wrong_type_reject_only_their_part(receiver: LiveReceiver) -> None:
    """OTLP/JSON with the proto field names (``resource_spans``): an unreadable resource counts the spans it held;
    a scope whose ``spans`` is not a list is named alone; the other resource's span is stored."""
    lost = {"attributes": 3}
    doc = {
        "resource_spans": [
            {"resource": lost, "scope_spans": [{"spans": [_span("01" * 8, "a"), _span("02" * 8, "b")]}]},
            {"scope_spans": [{"spans": {"not": "a list"}}, {"spans": [_span("03" * 8, "kept")]}]},
        ]
    }
    answer = receiver.post("/v1/traces", json.dumps(doc).encode(), JSON)
    partial = _response(answer, JSON, trace_service_pb2.ExportTraceServiceResponse())
    assert partial.rejected_spans == 3
    assert "resourceSpans[0]: cannot be decoded (its 2 span(s))" in partial.error_message
    assert "resourceSpans[1].scopeSpans[0]: cannot be decoded (its 1 span(s))" in partial.error_message
    assert _names(receiver) == ["kept"]


def test_a_whole_too_deep_for_the_decoder_whose_parts_read_is_still_400(receiver: LiveReceiver) -> None:
    """A request refused only for the depth of the whole (each part reads alone, with the decoder's whole depth
    budget) names nothing unreadable: it is refused as before, not stored in part."""
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [_span("01" * 8, "deep"), _span("02" * 8, "next")]}]}]}
    request = trace_service_pb2.ExportTraceServiceRequest.FromString(_protobuf(OtlpSignal.TRACES, doc))
    encoded = [span.SerializeToString() for span in request.resource_spans[0].scope_spans[0].spans]
    encoded[0] += _deep_attribute(32)  # 96 levels: within the decoder's limit alone, past it under the request
    body = _field(1, _field(2, b"".join(_field(2, span) for span in encoded)))
    trace_pb2.Span.FromString(encoded[0])  # the span reads on its own
    answer = receiver.post("/v1/traces", body, PROTOBUF)
    assert answer.status_code == 400
    assert "not an OTLP protobuf" in status_pb2.Status.FromString(answer.content).message


@pytest.mark.parametrize("fmt", [JSON, PROTOBUF])
def test_a_request_with_nothing_readable_is_still_400(receiver: LiveReceiver, fmt: str) -> None:
    """When no span of the request can be read the request is refused as before, with the decoder's message."""
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [_span("01" * 8, "BADNAME!")]}]}]}
    body = (
        _protobuf(OtlpSignal.TRACES, doc, "BADNAME!")
        if fmt == PROTOBUF
        else b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]}'
    )
    answer = receiver.post("/v1/traces", body, fmt)
    assert answer.status_code == 400
    message = status_pb2.Status.FromString(answer.content).message if fmt == PROTOBUF else answer.json()["message"]
    assert ("bad UTF-8" if fmt == PROTOBUF else "not a hex id") in message


def test_a_log_record_that_cannot_be_decoded_is_rejected_alone(receiver: LiveReceiver) -> None:
    """A log record whose body is not UTF-8 is named and counted; its sibling is stored."""
    records = [
        {"timeUnixNano": "1", "traceId": TRACE_ID, "body": {"stringValue": "good"}},
        {"timeUnixNano": "2", "traceId": TRACE_ID, "body": {"stringValue": "BADBODY!"}},
    ]
    doc = {"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]}
    answer = receiver.post("/v1/logs", _protobuf(OtlpSignal.LOGS, doc, "BADBODY!"), PROTOBUF)
    partial = _response(answer, PROTOBUF, logs_service_pb2.ExportLogsServiceResponse())
    assert partial.rejected_log_records == 1
    assert "resourceLogs[0].scopeLogs[0].logRecords[1]: cannot be decoded:" in partial.error_message
    got = receiver.get("/api/otlp/logs", params={"trace_id": TRACE_ID}).json()["records"]
    assert [record["body"] for record in got] == ["good"]


def test_a_metric_that_cannot_be_decoded_rejects_its_data_points(receiver: LiveReceiver) -> None:
    """A metric whose name is not UTF-8 counts its data points as rejected; the next metric is stored."""
    points = [{"timeUnixNano": "1", "asInt": "1"}, {"timeUnixNano": "2", "asInt": "2"}]
    metrics = [{"name": "BADNAME!", "gauge": {"dataPoints": points}}, {"name": "kept", "gauge": {"dataPoints": points}}]
    doc = {"resourceMetrics": [{"scopeMetrics": [{"metrics": metrics}]}]}
    answer = receiver.post("/v1/metrics", _protobuf(OtlpSignal.METRICS, doc, "BADNAME!"), PROTOBUF)
    partial = _response(answer, PROTOBUF, metrics_service_pb2.ExportMetricsServiceResponse())
    assert partial.rejected_data_points == 2
    assert "metrics[0]: cannot be decoded (its 2 data point(s)):" in partial.error_message
    (series,) = receiver.get("/api/otlp/metrics", params={"name": "kept"}).json()["series"]
    assert len(series["points"]) == 2


def test_what_could_be_read_is_forwarded(receiver: LiveReceiver, tmp_path: Path) -> None:
    """The upstream gets the readable spans, re-encoded, not the body it could not read either."""
    config = ReceiverConfig(db_path=tmp_path / "front.db", sweep_interval_s=0, forward_endpoint=receiver.url)
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [_span("01" * 8, "BADNAME!"), _span("02" * 8, "sent")]}]}]}
    with receiver_running(config) as front:
        answer = front.post("/v1/traces", _protobuf(OtlpSignal.TRACES, doc, "BADNAME!"), PROTOBUF)
        assert _response(answer, PROTOBUF, trace_service_pb2.ExportTraceServiceResponse()).rejected_spans == 1
        stats = front.wait_for("/api/otlp/stats", lambda d: d["forwarding"]["sent"] == 1)
    assert stats["forwarding"]["items_sent"] == 1
    assert _names(receiver) == ["sent"]
    assert receiver.get("/api/otlp/stats").json()["spans"]["rejected"] == 0


def test_the_framing_reads_every_field_back_to_the_same_bytes() -> None:
    """The fields the salvage splits an encoded message into are the message's own bytes, in order."""
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": [_span("01" * 8, "a"), _span("02" * 8, "b")]}]}]}
    body = _protobuf(OtlpSignal.TRACES, doc)
    (resource,) = fields(body)
    assert resource[0] == 1
    assert b"".join(whole for _, whole, _ in fields(body)) == body
    (scope,) = (payload for number, _, payload in fields(resource[2]) if number == 2)
    spans = [payload for number, _, payload in fields(scope) if number == 2]
    assert [trace_pb2.Span.FromString(span).name for span in spans] == ["a", "b"]
    decoded = decode_export(OtlpSignal.TRACES, body, OtlpFormat.PROTOBUF)
    assert decoded.unreadable.problems == []
    with pytest.raises(Exception, match="runs past the end"):
        fields(body[:-1])


_VALID = {
    OtlpSignal.TRACES: {
        "resourceSpans": [
            {"scopeSpans": [{"spans": [_span("01" * 8, "a"), _span("02" * 8, "b")]}]},
            {"scopeSpans": [{"spans": [_span("03" * 8, "c")]}, {"spans": [_span("04" * 8, "d")]}]},
        ]
    },
    OtlpSignal.LOGS: {
        "resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": f"r{i}"}} for i in range(3)]}]}]
    },
    OtlpSignal.METRICS: {
        "resourceMetrics": [
            {
                "scopeMetrics": [
                    {
                        "metrics": [
                            {"name": "g", "gauge": {"dataPoints": [{"timeUnixNano": "1", "asInt": "1"}]}},
                            {"name": "s", "sum": {"dataPoints": [{"timeUnixNano": "1", "asDouble": 2.5}]}},
                        ]
                    }
                ]
            }
        ]
    },
}


@settings(max_examples=300, deadline=None)
@given(
    signal=st.sampled_from(list(OtlpSignal)),
    changes=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_a_damaged_request_is_read_in_part_or_refused_never_an_error(
    signal: OtlpSignal, changes: list[tuple[int, int]]
) -> None:
    """Bytes of a valid protobuf request overwritten anywhere: decode_export returns what it read (the stand-ins
    of what it could not read left out of what is forwarded) or refuses the request with a 400, nothing else."""
    body = bytearray(_protobuf(signal, _VALID[signal]))
    for at, byte in changes:
        body[at % len(body)] = byte
    try:
        decoded = decode_export(signal, bytes(body), OtlpFormat.PROTOBUF)
    except OtlpBodyError as exc:
        refused = exc.status
        assert refused == 400
        return
    readable = leaves(decoded.readable(), LEVELS[signal])
    assert readable == leaves(decoded.message, LEVELS[signal]) - len(decoded.unreadable.items)
    assert len(decoded.unreadable.problems) >= len(decoded.unreadable.items)


_NOISE = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=6), st.lists(st.integers(), max_size=2), st.just({})
)


@settings(max_examples=300, deadline=None)
@given(signal=st.sampled_from(list(OtlpSignal)), data=st.data())
def test_a_damaged_json_request_is_read_in_part_or_refused_never_an_error(signal: OtlpSignal, data: Any) -> None:
    """Values of a valid OTLP/JSON request replaced anywhere by other JSON: a partial read or a 400, nothing else."""
    doc = json.loads(json.dumps(_VALID[signal]))
    places: list[tuple[Any, Any]] = []

    def collect(node: Any) -> None:
        for key in list(node) if isinstance(node, dict) else range(len(node)) if isinstance(node, list) else []:
            places.append((node, key))
            collect(node[key])

    collect(doc)
    for _ in range(data.draw(st.integers(1, 3))):
        node, key = data.draw(st.sampled_from(places))
        node[key] = data.draw(_NOISE)
    try:
        decoded = decode_export(signal, json.dumps(doc).encode(), OtlpFormat.JSON)
    except OtlpBodyError as exc:
        refused = exc.status
        assert refused == 400
        return
    readable = leaves(decoded.readable(), LEVELS[signal])
    assert readable == leaves(decoded.message, LEVELS[signal]) - len(decoded.unreadable.items)
