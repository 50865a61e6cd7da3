"""The SDK's own spans carry the attributes a node attempt recorded (an http node's ``http.request.method``,
``url.full``, ``http.response.status_code``), as its event carries them: redacted, within the span's limit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import flowledger
from flowledger.instrument import NodeAttempt, current_node
from flowledger.instrument.delivery._grpc_spans import readable_spans
from flowledger.instrument.delivery._otlp_protobuf import OtlpProtocol, encode_export
from flowledger.instrument.delivery._otlp_spans import SPAN_ATTRIBUTE_COUNT_LIMIT, export_request, span_from_event
from flowledger.receiver._config import ReceiverConfig
from tests.otel._support import receiver_running

HTTP_ATTRIBUTES = {
    "http.request.method": "POST",
    "url.full": "http://***@hooks.example:8080/notify?token=***",
    "http.response.status_code": 201,
}


def _node_finished(attributes: Any) -> dict[str, Any]:
    return {
        "v": 1,
        "event_id": "01930000-0000-7000-8000-000000000001",
        "kind": "node_finished",
        "run_id": "01930000-0000-7000-8000-0000000000aa",
        "seq": 3,
        "ts": "2026-11-22T06:33:22.500000Z",
        "producer_id": "01930000-0000-7000-8000-000000000002",
        "producer_seq": 3,
        "data": {
            "node_id": "notify",
            "span_id": "00f067aa0ba902b7",
            "parent_span_id": "b7ad6b7169203331",
            "trace_id": "0af7651916cd43dd8448eb211c80319c",
            "attempt": 1,
            "status": "succeeded",
            "started_at": "2026-11-22T06:33:22.400000Z",
            "duration_ms": 100,
            "attributes": attributes,
        },
    }


def test_a_nodes_recorded_attributes_reach_the_receivers_trace(tmp_path: Path, configure: Callable[..., Any]) -> None:
    """A real run exporting its own spans to a real receiver: the node's span has the attributes it recorded (given
    when it started and set while it ran), secret-looking ones redacted as in its record."""
    with receiver_running(ReceiverConfig(db_path=tmp_path / "flowledger.db", sweep_interval_s=0)) as live:
        configure(endpoint=live.url, export_spans=True, spool_dir=tmp_path / "spool")
        with (
            flowledger.run("notify-wf") as run,
            NodeAttempt("notify", input={"to": "ops"}, attributes={"team": "ops"}),
        ):
            node = current_node()
            assert node is not None
            for key, value in HTTP_ATTRIBUTES.items():
                node.set_attribute(key, value)
            node.set_attribute("authorization", "Bearer sk-live-123")
            node.set_attribute("flowledger.status", "forged")
        assert flowledger.flush(20)
        trace = live.wait_for(f"/api/traces/{run.trace_id}", lambda t: t["span_count"] == 2)
    (span,) = [s for s in trace["spans"] if s["name"] == "notify"]
    attributes = span["attributes"]
    assert {key: attributes.get(key) for key in HTTP_ATTRIBUTES} == HTTP_ATTRIBUTES
    assert attributes["team"] == "ops"
    assert attributes["authorization"] == "[REDACTED]"
    assert attributes["flowledger.status"] == "succeeded"  # a node cannot pass its own value for flowledger's
    assert attributes["flowledger.node.id"] == "notify"


def _decoded_protobuf(span: dict[str, Any]) -> Any:
    data, _ = encode_export(export_request([span], service_name="shop"), OtlpProtocol.HTTP_PROTOBUF)
    message = ExportTraceServiceRequest()
    message.ParseFromString(data)
    return message.resource_spans[0].scope_spans[0].spans[0]


def test_recorded_attributes_go_out_in_every_encoding() -> None:
    """OTLP JSON, protobuf (decoded by the official classes) and the gRPC exporter's spans carry the attributes; a
    value OTLP has no scalar for goes as its JSON text."""
    span = span_from_event(_node_finished({**HTTP_ATTRIBUTES, "tags": ["a", "b"], "none": None}), None)
    assert span is not None
    as_json = {pair["key"]: next(iter(pair["value"].values())) for pair in span["attributes"]}
    assert as_json["http.request.method"] == "POST"
    assert as_json["http.response.status_code"] == "201"  # OTLP JSON's int64 is a decimal string
    assert as_json["tags"] == '["a","b"]'
    assert "none" not in as_json
    decoded = _decoded_protobuf(span)
    by_key = {kv.key: kv.value for kv in decoded.attributes}
    assert by_key["url.full"].string_value == HTTP_ATTRIBUTES["url.full"]
    assert by_key["http.response.status_code"].int_value == 201
    assert decoded.dropped_attributes_count == 0
    (readable,) = readable_spans(export_request([span], service_name="shop"))
    assert readable.attributes is not None
    assert readable.attributes["http.request.method"] == "POST"
    assert readable.attributes["http.response.status_code"] == 201


def test_a_span_keeps_at_most_the_attribute_limit_and_counts_the_rest() -> None:
    """200 recorded attributes: the span keeps flowledger's and as many of them as fit in 128, and says how many
    it dropped, as the OTel SDK's own limit does."""
    recorded = {f"k{i:03}": i for i in range(200)}
    span = span_from_event(_node_finished(recorded), None)
    assert span is not None
    assert len(span["attributes"]) == SPAN_ATTRIBUTE_COUNT_LIMIT
    own = sum(pair["key"].startswith("flowledger.") for pair in span["attributes"])
    assert span["droppedAttributesCount"] == 200 - (SPAN_ATTRIBUTE_COUNT_LIMIT - own)
    decoded = _decoded_protobuf(span)
    assert decoded.dropped_attributes_count == span["droppedAttributesCount"]
    assert [kv.key for kv in decoded.attributes][own : own + 2] == ["k000", "k001"]


@pytest.mark.parametrize(
    "recorded",
    [
        {"__flowledger__": "truncated", "preview": '{"a": 1', "original_bytes": 9000, "omitted_bytes": 4000},
        "not a mapping",
        [1, 2],
    ],
)
def test_attributes_recorded_as_a_marker_give_none(recorded: Any) -> None:
    """Attributes cut whole (a truncated marker) or not a mapping name no attribute: the span has flowledger's only."""
    span = span_from_event(_node_finished(recorded), None)
    assert span is not None
    assert all(pair["key"].startswith("flowledger.") for pair in span["attributes"])
    assert "droppedAttributesCount" not in span
