"""OTLP/HTTP JSON spans from finished runs and nodes, and their best-effort export."""

from __future__ import annotations

import base64
import copy
import json
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from flowledger.instrument._config import Settings
from flowledger.instrument.delivery._otlp_protobuf import OtlpProtocol
from flowledger.instrument.delivery._otlp_spans import export_request, span_from_event, timestamp_unix_ns
from flowledger.instrument.delivery._sender import Sender
from flowledger.instrument.delivery._span_sender import span_protocol
from flowledger.receiver._config import ReceiverConfig
from tests.instrument.delivery._sender_support import PROTOBUF, MockReceiver, make_settings, recorder
from tests.otel._support import receiver_running

PROTOCOL_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
RUN_SPAN = "b7ad6b7169203331"
NODE_SPAN = "00f067aa0ba902b7"
RUN_ID = "01930000-0000-7000-8000-0000000000aa"


def _event(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "v": 1,
        "event_id": "01930000-0000-7000-8000-000000000001",
        "kind": kind,
        "run_id": RUN_ID,
        "seq": 3,
        "ts": "2026-11-22T06:33:22.500000Z",
        "producer_id": "01930000-0000-7000-8000-000000000002",
        "producer_seq": 3,
        "data": data,
    }


def node_failed() -> dict[str, Any]:
    return _event(
        "node_finished",
        {
            "node_id": "price",
            "span_id": NODE_SPAN,
            "parent_span_id": RUN_SPAN,
            "trace_id": TRACE_ID,
            "attempt": 2,
            "item": 4,
            "effect": True,
            "status": "failed",
            "started_at": "2026-11-22T06:33:22.123456Z",
            "duration_ms": 12.5,
            "location": {"file": "shop.yaml", "line": 14},
            "definition_sha256": "a" * 64,
            "error": {"type": "ValueError", "message": "bad price", "stack": "Traceback ...\nValueError: bad price"},
            "cost": {"tokens": 1200, "usd": 0.004},
        },
    )


def run_succeeded() -> dict[str, Any]:
    return _event(
        "run_finished",
        {
            "status": "succeeded",
            "workflow_id": "order-intake",
            "workflow_name": "Order intake",
            "trace_id": TRACE_ID,
            "span_id": RUN_SPAN,
            "started_at": "2026-11-22T06:33:22Z",
            "duration_ms": 1500,
            "dry_run": False,
            "cost": {"usd": 1},
        },
    )


def _attrs(span: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: next(iter(a["value"].values())) for a in span["attributes"]}


def _to_protobuf_json(doc: dict[str, Any]) -> dict[str, Any]:
    """OTLP JSON uses hex ids; the plain protobuf JSON mapping wants base64 bytes."""
    out = copy.deepcopy(doc)
    for resource in out["resourceSpans"]:
        for scope in resource["scopeSpans"]:
            for span in scope["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
    return out


def test_failed_node_span_fields() -> None:
    """A failed node becomes an INTERNAL span named by the node with ERROR status and flowledger.* attributes."""
    span = span_from_event(node_failed())
    assert span is not None
    assert (span["traceId"], span["spanId"], span["parentSpanId"]) == (TRACE_ID, NODE_SPAN, RUN_SPAN)
    assert span["name"] == "price"
    assert span["kind"] == 1
    start = timestamp_unix_ns("2026-11-22T06:33:22.123456Z")
    assert span["startTimeUnixNano"] == str(start)
    assert span["endTimeUnixNano"] == str(start + 12_500_000)
    assert span["status"] == {"code": 2, "message": "ValueError: bad price"}
    assert _attrs(span) == {
        "flowledger.run.id": RUN_ID,
        "flowledger.node.id": "price",
        "flowledger.node.attempt": "2",
        "flowledger.node.item": "4",
        "flowledger.status": "failed",
        "flowledger.definition.sha256": "a" * 64,
        "flowledger.definition.file": "shop.yaml",
        "flowledger.definition.line": "14",
        "flowledger.cost.usd": 0.004,
        "flowledger.cost.tokens": "1200",
        "flowledger.effect": True,
    }


def test_attributes_equal_in_python_but_of_other_kinds_keep_their_kind() -> None:
    """An attribute value seen before as 1 is still a bool when it is True, and a string when it is "1"."""
    kinds = {}
    for attempt in (1, True, "1", 1, True):
        event = node_failed()
        event["data"]["attempt"] = attempt
        span = span_from_event(event)
        assert span is not None
        (value,) = [a["value"] for a in span["attributes"] if a["key"] == "flowledger.node.attempt"]
        kinds[repr(attempt)] = value
    assert kinds == {"1": {"intValue": "1"}, "True": {"boolValue": True}, "'1'": {"stringValue": "1"}}


def test_failed_node_has_exception_event() -> None:
    """A failure adds an "exception" span event with type, message and stack trace attributes."""
    span = span_from_event(node_failed())
    assert span is not None
    [event] = span["events"]
    assert event["name"] == "exception"
    assert event["timeUnixNano"] == span["endTimeUnixNano"]
    assert _attrs(event) == {
        "exception.type": "ValueError",
        "exception.message": "bad price",
        "exception.stacktrace": "Traceback ...\nValueError: bad price",
    }


def test_run_span_fields() -> None:
    """A finished run becomes a root span named "run <workflow_id>" with workflow attributes, status unset."""
    span = span_from_event(run_succeeded())
    assert span is not None
    assert span["name"] == "run order-intake"
    assert "parentSpanId" not in span
    assert span["status"] == {"code": 0}
    assert "events" not in span
    attrs = _attrs(span)
    assert attrs["flowledger.workflow.id"] == "order-intake"
    assert attrs["flowledger.workflow.name"] == "Order intake"
    assert attrs["flowledger.dry_run"] is False
    assert attrs["flowledger.cost.usd"] == 1.0
    assert "flowledger.node.id" not in attrs


@pytest.mark.parametrize(
    "event",
    [
        _event("node_started", {"node_id": "a", "span_id": NODE_SPAN, "trace_id": TRACE_ID, "attempt": 1}),
        _event("heartbeat", {}),
        _event("run_finished", {"status": "succeeded", "started_at": "2026-11-22T06:33:22Z", "duration_ms": 1}),
        _event(
            "run_finished", {"trace_id": TRACE_ID, "span_id": RUN_SPAN, "started_at": "yesterday", "duration_ms": 1}
        ),
    ],
)
def test_events_without_a_span(event: dict[str, Any]) -> None:
    """Other kinds, and finished events missing ids or a valid start, give no span."""
    assert span_from_event(event) is None


@pytest.mark.parametrize("make", [node_failed, run_succeeded, lambda: _skipped_node()])
def test_spans_the_application_exported_are_not_rebuilt(make: Any) -> None:
    """A finished run, node or skip marked otel_exported gives no span; marked false it still does."""
    event = make()
    assert span_from_event(event) is not None
    event["data"]["otel_exported"] = False
    assert span_from_event(event) is not None
    event["data"]["otel_exported"] = True
    assert span_from_event(event) is None


def _skipped_node() -> dict[str, Any]:
    event = node_failed()
    event["data"].update(status="skipped", skip_reason="upstream failed", error=None, duration_ms=0)
    return event


def test_sender_exports_no_copy_of_the_applications_spans(tmp_path: Path) -> None:
    """Events whose spans the application's provider exported are delivered, but no span is posted for them."""
    receiver = MockReceiver()
    sender = Sender(make_settings(tmp_path), transport=receiver.transport(), export_spans=True)
    exported = node_failed()
    exported["data"]["otel_exported"] = True
    sender.submit(exported, 500)
    sender.submit(run_succeeded(), 500)
    assert sender.flush(5.0)
    assert sender.shutdown(5.0)
    spans = [s for doc in receiver.traces for s in doc["resourceSpans"][0]["scopeSpans"][0]["spans"]]
    assert [s["spanId"] for s in spans] == [RUN_SPAN]
    assert sender.stats()["sent"] == 2


def test_timestamp_parsing() -> None:
    """RFC 3339 times with offsets and nanosecond fractions convert to exact Unix nanoseconds."""
    assert timestamp_unix_ns("1970-01-01T00:00:01.000000001Z") == 1_000_000_001
    assert timestamp_unix_ns("1970-01-01T01:00:00+01:00") == 0
    with pytest.raises(ValueError, match="RFC 3339"):
        timestamp_unix_ns("1970-01-01")


def test_export_request_parses_as_otlp_protobuf() -> None:
    """The export request is a valid ExportTraceServiceRequest per the opentelemetry-proto package."""
    spans = [s for s in (span_from_event(run_succeeded()), span_from_event(node_failed())) if s is not None]
    doc = export_request(spans, service_name="shop")
    message = json_format.Parse(json.dumps(_to_protobuf_json(doc)), ExportTraceServiceRequest())
    [resource_spans] = message.resource_spans
    assert resource_spans.resource.attributes[0].key == "service.name"
    assert resource_spans.resource.attributes[0].value.string_value == "shop"
    [scope] = resource_spans.scope_spans
    assert scope.scope.name == "flowledger"
    run_span, node_span = scope.spans
    assert run_span.trace_id == bytes.fromhex(TRACE_ID)
    assert node_span.parent_span_id == bytes.fromhex(RUN_SPAN)
    assert node_span.kind == 1
    assert node_span.status.code == 2
    assert node_span.end_time_unix_nano - node_span.start_time_unix_nano == 12_500_000
    assert node_span.events[0].name == "exception"
    assert {a.key: a.value.int_value for a in node_span.attributes if a.key == "flowledger.node.attempt"} == {
        "flowledger.node.attempt": 2
    }


def test_sender_exports_spans_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With export_spans=True, finished runs and nodes are POSTed as gzip OTLP (JSON to the receiver) to traces_url."""
    for name in PROTOCOL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    receiver = MockReceiver()
    settings = make_settings(tmp_path, "http://receiver.test", otlp_headers=(("x-tenant", "t1"),), service_name="shop")
    sender = Sender(settings, transport=receiver.transport(), export_spans=True)
    sender.submit(node_failed(), 500)
    sender.submit(run_succeeded(), 500)
    sender.submit(_event("heartbeat", {}), 100)
    assert sender.flush(5.0)
    assert sender.shutdown(5.0)
    [request] = [r for r in receiver.requests if r.url.path == "/v1/traces"]
    assert str(request.url) == "http://receiver.test/v1/traces"
    assert request.headers["Content-Type"] == "application/json"  # the receiver's default: cheapest to encode
    assert request.headers["Content-Encoding"] == "gzip"
    assert request.headers["x-tenant"] == "t1"
    [doc] = receiver.traces
    names = [s["name"] for s in doc["resourceSpans"][0]["scopeSpans"][0]["spans"]]
    assert sorted(names) == ["price", "run order-intake"]
    stats = sender.stats()
    assert (stats["spans_sent"], stats["spans_dropped"], stats["sent"]) == (2, 0, 3)


def test_otlp_headers_are_percent_decoded(tmp_path: Path) -> None:
    """OTEL_EXPORTER_OTLP_HEADERS keys and values are percent-decoded before they are sent."""
    receiver = MockReceiver()
    headers = (("Authorization", "Basic%20abc"), ("x-tenant%2Did", "a%3Db%2Cc%25"))
    settings = make_settings(tmp_path, otlp_traces_endpoint="http://collector.test/v1/traces", otlp_headers=headers)
    sender = Sender(settings, transport=receiver.transport(), export_spans=True)
    sender.submit(node_failed(), 500)
    assert sender.flush(5.0)
    sender.shutdown(1.0)
    [request] = [r for r in receiver.requests if r.url.path == "/v1/traces"]
    assert request.headers["Authorization"] == "Basic abc"
    assert request.headers["x-tenant-id"] == "a=b,c%"


def test_spans_for_the_receiver_default_to_json_and_for_a_backend_to_protobuf() -> None:
    """Without protocol variables the receiver gets http/json (cheap to encode), an OTLP backend http/protobuf."""
    receiver_bound = Settings(endpoint="http://127.0.0.1:4318")
    backend_bound = Settings(otlp_traces_endpoint="http://collector:4318/v1/traces")
    assert span_protocol(receiver_bound, {}) is OtlpProtocol.HTTP_JSON
    assert span_protocol(backend_bound, {}) is OtlpProtocol.HTTP_PROTOBUF
    chosen = {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    assert span_protocol(receiver_bound, chosen) is OtlpProtocol.HTTP_PROTOBUF


@pytest.mark.parametrize(
    ("environ", "content_type"),
    [
        ({}, "application/json"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, PROTOBUF),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, PROTOBUF),
        ({"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"}, "application/json"),
    ],
)
def test_span_protocol_over_a_real_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], content_type: str
) -> None:
    """Spans go in the protocol the OTel variables choose; protobuf bodies parse with the stock opentelemetry-proto."""
    for name in PROTOCOL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with recorder() as rec:
        rec.traces_rejected = 1  # answered in the request's own encoding, which the sender must read
        sender = Sender(make_settings(tmp_path, rec.url, service_name="shop"), export_spans=True)
        sender.submit(node_failed(), 500)
        sender.submit(run_succeeded(), 500)
        assert sender.flush(10.0)
        sender.shutdown(1.0)
        [(sent_type, body)] = rec.traces
    assert sent_type == content_type
    if content_type == PROTOBUF:
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
    else:
        message = json_format.Parse(json.dumps(_to_protobuf_json(json.loads(body))), ExportTraceServiceRequest())
    [resource_spans] = message.resource_spans
    assert resource_spans.resource.attributes[0].value.string_value == "shop"
    spans = {span.name: span for span in resource_spans.scope_spans[0].spans}
    assert sorted(spans) == ["price", "run order-intake"]
    assert spans["price"].span_id == bytes.fromhex(NODE_SPAN)
    assert spans["price"].parent_span_id == bytes.fromhex(RUN_SPAN)
    assert spans["price"].status.code == 2
    stats = sender.stats()
    assert (stats["spans_sent"], stats["spans_dropped"]) == (1, 1)


def test_span_export_failure_is_counted_and_never_spooled(tmp_path: Path) -> None:
    """A failing traces endpoint drops spans (counted); events are still delivered and nothing is spooled."""
    receiver = MockReceiver(traces_status=503)
    sender = Sender(make_settings(tmp_path / "spool"), transport=receiver.transport(), export_spans=True)
    sender.submit(node_failed(), 500)
    assert sender.flush(5.0)
    sender.shutdown(5.0)
    stats = sender.stats()
    assert (stats["spans_sent"], stats["spans_dropped"], stats["sent"], stats["spooled"]) == (0, 1, 1, 0)
    assert len([r for r in receiver.requests if r.url.path == "/v1/traces"]) == 2  # one bounded retry


def test_unreachable_traces_endpoint_drops_spans_only(tmp_path: Path) -> None:
    """A traces endpoint refusing connections costs spans (counted), never events."""

    def refuse_traces(request: httpx.Request) -> None:
        if request.url.path == "/v1/traces":
            raise httpx.ConnectError("connection refused", request=request)

    receiver = MockReceiver(seen=refuse_traces)
    sender = Sender(make_settings(tmp_path), transport=receiver.transport(), export_spans=True)
    sender.submit(node_failed(), 500)
    assert sender.flush(5.0)
    sender.shutdown(1.0)
    stats = sender.stats()
    assert (stats["sent"], stats["spans_sent"], stats["spans_dropped"]) == (1, 0, 1)


def test_hanging_traces_endpoint_does_not_hold_events(tmp_path: Path) -> None:
    """While a span export hangs, events keep flowing on their own worker."""
    release = threading.Event()

    def hang_on_traces(request: httpx.Request) -> None:
        if request.url.path == "/v1/traces":
            release.wait(60.0)  # far longer than the flushes below wait

    receiver = MockReceiver(seen=hang_on_traces)
    sender = Sender(make_settings(tmp_path), transport=receiver.transport(), export_spans=True)
    try:
        sender.submit(node_failed(), 500)
        assert sender.flush(5.0)  # true: the events went out, though the spans still hang
        second = run_succeeded()
        second["event_id"] = "01930000-0000-7000-8000-000000000009"
        sender.submit(second, 500)
        assert sender.flush(5.0)
        assert receiver.event_ids() == ["01930000-0000-7000-8000-000000000001", second["event_id"]]
    finally:
        release.set()
        sender.shutdown(1.0)


_hex = st.text(alphabet="0123456789abcdef", min_size=1, max_size=1)
_text = st.text(max_size=40)


@st.composite
def finished_events(draw: st.DrawFn) -> dict[str, Any]:
    """Arbitrary node_finished or run_finished events of the wire format."""
    failed = draw(st.booleans())
    data: dict[str, Any] = {
        "trace_id": "".join(draw(st.lists(_hex, min_size=32, max_size=32))),
        "span_id": "".join(draw(st.lists(_hex, min_size=16, max_size=16))),
        "started_at": draw(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1))).isoformat()
        + "Z",
        "duration_ms": draw(st.floats(min_value=0, max_value=1e9, allow_nan=False)),
        "status": "failed" if failed else "succeeded",
        "cost": {"tokens": draw(st.integers(0, 2**62)), "usd": draw(st.floats(0, 1e6, allow_nan=False))},
    }
    if failed:
        data["error"] = {"type": draw(_text), "message": draw(_text), "stack": draw(st.none() | _text)}
    if draw(st.booleans()):
        data["parent_span_id"] = "".join(draw(st.lists(_hex, min_size=16, max_size=16)))
    if draw(st.booleans()):
        data.update(
            node_id=draw(_text.filter(bool)), attempt=draw(st.integers(1, 100)), item=draw(st.none() | st.integers(0))
        )
        return _event("node_finished", data)
    data.update(workflow_id=draw(_text.filter(bool)), workflow_name=draw(st.none() | _text))
    return _event("run_finished", data)


@settings(max_examples=60, deadline=None)
@given(finished_events())
def test_any_finished_event_gives_a_valid_otlp_span(event: dict[str, Any]) -> None:
    """Every finished run or node, whatever its values, becomes a span the OTLP protobuf accepts."""
    span = span_from_event(event)
    assert span is not None
    message = json_format.Parse(
        json.dumps(_to_protobuf_json(export_request([span], service_name="svc"))), ExportTraceServiceRequest()
    )
    parsed = message.resource_spans[0].scope_spans[0].spans[0]
    assert parsed.span_id == bytes.fromhex(event["data"]["span_id"])
    assert parsed.end_time_unix_nano >= parsed.start_time_unix_nano
    assert parsed.status.code == (2 if event["data"]["status"] == "failed" else 0)


@pytest.mark.parametrize(("otlp_endpoint", "auth"), [(None, "Bearer k-9"), ("http://collector.test/v1/traces", None)])
def test_spans_to_the_receiver_carry_its_api_key(tmp_path: Path, otlp_endpoint: str | None, auth: str | None) -> None:
    """Spans sent to the receiver carry its Bearer key; spans sent to another OTLP backend do not."""
    receiver = MockReceiver()
    settings = make_settings(tmp_path, api_key="k-9", otlp_traces_endpoint=otlp_endpoint)
    sender = Sender(settings, transport=receiver.transport(), export_spans=True)
    sender.submit(node_failed(), 500)
    assert sender.flush(5.0)
    sender.shutdown(1.0)
    [request] = [r for r in receiver.requests if r.url.path == "/v1/traces"]
    assert request.headers.get("Authorization") == auth


@pytest.mark.parametrize("protocol", ["http/json", "http/protobuf"])
def test_a_lone_surrogate_costs_no_span(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, protocol: str) -> None:
    """A span string holding a lone surrogate (no UTF-8 form) goes as U+FFFD in either OTLP/HTTP protocol: a real
    receiver gets every span of the batch, the odd ones and the plain one beside them."""
    for name in PROTOCOL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", protocol)
    odd_node = node_failed()
    odd_node["data"].update(node_id="pr\ud800ice", location={"file": "shop\udcff.yaml", "line": 14})
    odd_node["data"]["error"]["message"] = "bad \ud800 price"
    odd_run = run_succeeded()
    odd_run["data"]["workflow_name"] = "Order \ud800 intake"
    plain = node_failed()
    plain["data"].update(node_id="plain", span_id="00f067aa0ba902b8", error=None, status="succeeded")
    with receiver_running(ReceiverConfig(db_path=tmp_path / "ledger.db")) as live:
        sender = Sender(make_settings(tmp_path / "spool", live.url), export_spans=True)
        for event in (odd_node, odd_run, plain):
            sender.submit(event, 500)
        sender.flush(10.0)  # the spans are what this is about: these hand-made events' own fate does not matter
        sender.shutdown(5.0)
        assert (sender.stats()["spans_sent"], sender.stats()["spans_dropped"]) == (3, 0)
        spans = live.wait_for(f"/api/traces/{TRACE_ID}", lambda doc: len(doc.get("spans", [])) == 3)["spans"]
    by_name = {span["name"]: span for span in spans}
    assert sorted(by_name) == ["plain", "pr\ufffdice", "run order-intake"]
    assert by_name["run order-intake"]["attributes"]["flowledger.workflow.name"] == "Order \ufffd intake"
    assert by_name["pr\ufffdice"]["attributes"]["flowledger.definition.file"] == "shop\ufffd.yaml"
    assert by_name["pr\ufffdice"]["events"][0]["attributes"]["exception.message"] == "bad \ufffd price"
