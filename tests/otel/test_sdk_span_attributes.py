"""The SDK's own OTLP JSON spans: semantic conventions and the flowledger.* attribute namespace."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from flowledger.instrument.delivery._otlp_spans import RunMemo, export_request, span_from_event
from flowledger.receiver.otlp._decode import OtlpFormat, OtlpSignal, decode_request

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
RUN_SPAN = "00f067aa0ba902b7"
NODE_SPAN = "b7ad6b7169203331"
RUN_ID = "01930000-0000-7000-8000-0000000000bb"


def _event(kind: str, data: dict[str, Any], run_id: str = RUN_ID) -> dict[str, Any]:
    return {
        "v": 1,
        "event_id": "01930000-0000-7000-8000-000000000010",
        "kind": kind,
        "run_id": run_id,
        "seq": 0,
        "ts": "2026-11-22T07:00:00Z",
        "producer_id": "01930000-0000-7000-8000-000000000011",
        "producer_seq": 0,
        "data": data,
    }


def _run_started(run_id: str = RUN_ID) -> dict[str, Any]:
    return _event(
        "run_started",
        {
            "workflow_id": "order-intake",
            "workflow_name": "Order intake",
            "workflow_version": "3",
            "trigger_type": "http",
            "dry_run": False,
            "trace_id": TRACE_ID,
            "span_id": RUN_SPAN,
            "definition_sha256": "d" * 64,
        },
        run_id,
    )


def _node_finished(**extra: Any) -> dict[str, Any]:
    return _event(
        "node_finished",
        {
            "node_id": "notify",
            "span_id": NODE_SPAN,
            "parent_span_id": RUN_SPAN,
            "trace_id": TRACE_ID,
            "attempt": 1,
            "started_at": "2026-11-22T07:00:00.100000Z",
            "duration_ms": 3.0,
            **extra,
        },
    )


def _attrs(span: dict[str, Any]) -> dict[str, Any]:
    return {a["key"]: next(iter(a["value"].values())) for a in span["attributes"]}


def test_node_spans_carry_the_workflow_of_their_run() -> None:
    """After run_started, a node span names its workflow id, name and version under flowledger.workflow.*."""
    memo = RunMemo()
    assert span_from_event(_run_started(), memo) is None
    span = span_from_event(_node_finished(status="succeeded"), memo)
    assert span is not None
    attrs = _attrs(span)
    assert attrs["flowledger.workflow.id"] == "order-intake"
    assert attrs["flowledger.workflow.name"] == "Order intake"
    assert attrs["flowledger.workflow.version"] == "3"
    assert attrs["flowledger.run.id"] == RUN_ID
    assert attrs["flowledger.node.id"] == "notify"
    assert attrs["flowledger.node.attempt"] == "1"
    assert attrs["flowledger.status"] == "succeeded"
    assert "flowledger.trigger" not in attrs
    assert "flowledger.dry_run" not in attrs


def test_run_spans_carry_trigger_and_version() -> None:
    """The run span adds trigger, version and every cost counter; a run the memo never saw still gets a span."""
    memo = RunMemo()
    span_from_event(_run_started(), memo)
    finished = _event(
        "run_finished",
        {
            "status": "succeeded",
            "workflow_id": "order-intake",
            "trace_id": TRACE_ID,
            "span_id": RUN_SPAN,
            "started_at": "2026-11-22T07:00:00Z",
            "duration_ms": 10,
            "cost": {"tokens": 5, "tool_calls": 2, "external_requests": 1, "usd": 0.5},
        },
    )
    span = span_from_event(finished, memo)
    assert span is not None
    attrs = _attrs(span)
    assert attrs["flowledger.trigger"] == "http"
    assert attrs["flowledger.workflow.version"] == "3"
    assert attrs["flowledger.dry_run"] is False
    assert attrs["flowledger.definition.sha256"] == "d" * 64
    assert (attrs["flowledger.cost.tokens"], attrs["flowledger.cost.tool_calls"]) == ("5", "2")
    assert (attrs["flowledger.cost.external_requests"], attrs["flowledger.cost.usd"]) == ("1", 0.5)
    unknown = span_from_event(finished, RunMemo())
    assert unknown is not None
    assert "flowledger.trigger" not in _attrs(unknown)


def test_the_memo_is_bounded() -> None:
    """The memo forgets its oldest runs past its size."""
    memo = RunMemo(max_runs=2)
    for run_id in ("r1", "r2", "r3"):
        memo.remember(run_id, {"workflow_id": run_id})
    assert memo.get("r1") == {}
    assert memo.get("r3") == {"workflow_id": "r3"}


def test_skipped_simulated_and_duplicate_nodes_say_so() -> None:
    """Skip reasons and the simulated/duplicate flags of effect nodes become flowledger.node.* attributes."""
    span = span_from_event(
        _node_finished(status="skipped", skip_reason="upstream failed", simulated=True, duplicate=True), RunMemo()
    )
    assert span is not None
    attrs = _attrs(span)
    assert attrs["flowledger.node.skip_reason"] == "upstream failed"
    assert attrs["flowledger.node.simulated"] is True
    assert attrs["flowledger.node.duplicate"] is True
    assert span["status"] == {"code": 0}


def test_a_failure_is_an_error_status_with_an_exception_event() -> None:
    """A failed node is status ERROR with "Type: message" and an OTel exception event (type, message, stack)."""
    error = {"type": "HttpNodeError", "message": "POST /hook answered 502", "stack": "Traceback ..."}
    span = span_from_event(_node_finished(status="failed", error=error), RunMemo())
    assert span is not None
    assert span["status"] == {"code": 2, "message": "HttpNodeError: POST /hook answered 502"}
    (event,) = span["events"]
    assert event["name"] == "exception"
    assert _attrs(event) == {
        "exception.type": "HttpNodeError",
        "exception.message": "POST /hook answered 502",
        "exception.stacktrace": "Traceback ...",
    }


def test_integers_beyond_int64_stay_valid_otlp() -> None:
    """An attribute integer outside int64 is sent as its exact digits in a string, so the request stays valid."""
    span = span_from_event(_node_finished(status="succeeded", item=2**63), RunMemo())
    assert span is not None
    assert _attrs(span)["flowledger.node.item"] == str(2**63)
    body = json.dumps(export_request([span], service_name="svc")).encode()
    decode_request(OtlpSignal.TRACES, body, OtlpFormat.JSON)


def test_the_resource_names_service_and_telemetry_sdk() -> None:
    """The resource has service.name and the telemetry.sdk.* attributes of the semantic conventions."""
    span = span_from_event(_node_finished(status="succeeded"), RunMemo())
    assert span is not None
    doc = export_request([span], service_name="shop")
    message = decode_request(OtlpSignal.TRACES, json.dumps(doc).encode(), OtlpFormat.JSON)
    assert isinstance(message, ExportTraceServiceRequest)
    resource = json_format.MessageToDict(message.resource_spans[0].resource)
    attrs = {a["key"]: a["value"]["stringValue"] for a in resource["attributes"]}
    assert attrs == {
        "service.name": "shop",
        "telemetry.sdk.name": "flowledger",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.version": attrs["telemetry.sdk.version"],
    }
    assert attrs["telemetry.sdk.version"]
