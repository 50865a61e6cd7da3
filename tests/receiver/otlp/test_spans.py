"""Span times the store cannot keep, over a real socket: a partial success that keeps the good spans."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from flowledger.receiver._config import ReceiverConfig
from tests.otel._support import LiveReceiver, otlp_json, receiver_running, stock_provider

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
TOO_LATE_NS = [2**63, 2**64 - 1]


def _spans() -> tuple[Any, str]:
    provider, memory = stock_provider("late-app")
    tracer = provider.get_tracer("tests.otel", "1.0")
    with tracer.start_as_current_span("parent"), tracer.start_as_current_span("child"):
        pass
    spans = list(memory.get_finished_spans())
    provider.shutdown()
    return spans, f"{spans[0].context.trace_id:032x}"


@pytest.mark.parametrize("late_ns", TOO_LATE_NS)
@pytest.mark.parametrize("field", ["startTimeUnixNano", "endTimeUnixNano"])
def test_json_spans_at_or_past_2_63_ns_are_rejected_and_the_good_ones_kept(
    receiver: LiveReceiver, field: str, late_ns: int
) -> None:
    """A JSON span time of 2**63 ns or more is a rejected span in partialSuccess, not a 500."""
    spans, trace_id = _spans()
    doc = otlp_json(spans)
    batch = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    late = copy.deepcopy(batch[0])
    late["spanId"] = "7" * 16
    late[field] = str(late_ns)
    if field == "startTimeUnixNano":
        late["endTimeUnixNano"] = str(late_ns)
    batch.append(late)
    response = receiver.post("/v1/traces", json.dumps(doc).encode(), JSON)
    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 1
    assert f"spans[2]: {field} is 2**63 or more" in partial["errorMessage"]
    assert receiver.trace(trace_id)["span_count"] == 2


@pytest.mark.parametrize("late_ns", TOO_LATE_NS)
@pytest.mark.parametrize("field", ["start_time_unix_nano", "end_time_unix_nano"])
def test_protobuf_spans_at_or_past_2_63_ns_are_rejected_and_the_good_ones_kept(
    receiver: LiveReceiver, field: str, late_ns: int
) -> None:
    """A protobuf span time of 2**63 ns or more is a rejected span in partial_success, not a 500."""
    spans, trace_id = _spans()
    request = encode_spans(spans)
    late = request.resource_spans[0].scope_spans[0].spans.add()
    late.CopyFrom(request.resource_spans[0].scope_spans[0].spans[0])
    late.span_id = b"\x07" * 8
    setattr(late, field, late_ns)
    if field == "start_time_unix_nano":
        late.end_time_unix_nano = late_ns
    response = receiver.post("/v1/traces", request.SerializeToString(), PROTOBUF)
    assert response.status_code == 200
    answer = trace_service_pb2.ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    assert "is 2**63 or more" in answer.partial_success.error_message
    assert receiver.trace(trace_id)["span_count"] == 2


def test_a_span_sent_first_by_another_project_hides_nothing(tmp_path: Any) -> None:
    """Span squatting: another project posting a trace's ids first neither hides the real span nor shows it."""
    config = ReceiverConfig(
        db_path=tmp_path / "keys.db", sweep_interval_s=0, api_keys={"token-a": "shop", "token-b": "billing"}
    )
    spans, trace_id = _spans()
    real = encode_spans(spans)
    squat = copy.deepcopy(real)
    for span in squat.resource_spans[0].scope_spans[0].spans:
        span.name = "squatted"
    with receiver_running(config) as live:
        squatter = live.post("/v1/traces", squat.SerializeToString(), PROTOBUF, authorization="Bearer token-b")
        assert squatter.status_code == 200
        owner = live.post("/v1/traces", real.SerializeToString(), PROTOBUF, authorization="Bearer token-a")
        assert owner.status_code == 200
        mine = live.get(f"/api/traces/{trace_id}", headers={"Authorization": "Bearer token-a"}).json()
        assert sorted(span["name"] for span in mine["spans"]) == ["child", "parent"]
        assert {span["project"] for span in mine["spans"]} == {"shop"}
        theirs = live.get(f"/api/traces/{trace_id}", headers={"Authorization": "Bearer token-b"}).json()
        assert {span["name"] for span in theirs["spans"]} == {"squatted"}
        again = live.post("/v1/traces", real.SerializeToString(), PROTOBUF, authorization="Bearer token-a")
        assert again.status_code == 200
        assert (
            live.get(f"/api/traces/{trace_id}", headers={"Authorization": "Bearer token-a"}).json()["span_count"] == 2
        )
