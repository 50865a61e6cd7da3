"""The Store conformance suite, OTLP logs and metrics: bounded tables, exactly once, linking, reads and purges."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

from flowledger.receiver.otlp._logs import logs_from_request
from flowledger.receiver.otlp._metrics import points_from_request
from flowledger.receiver.store._protocol import PurgeSelection, Store
from flowledger.receiver.store._spans import SpanRow
from tests.receiver._support import RunEvents
from tests.receiver.store.conformance.conftest import prepared

pytestmark = pytest.mark.asyncio
_RECEIVED = "2026-12-03T12:00:00.000000Z"


def _gauge_request(points: list[tuple[str, int]]) -> Any:
    """One gauge ``depth`` with a point per (queue attribute, time)."""
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    gauge = request.resource_metrics.add().scope_metrics.add().metrics.add(name="depth").gauge
    for queue, time_ns in points:
        point = gauge.data_points.add(time_unix_nano=time_ns, as_int=time_ns)
        point.attributes.add(key="queue").value.string_value = queue
    return request


def _logs_request(trace_id: str, span_ids: list[str]) -> Any:
    request = logs_service_pb2.ExportLogsServiceRequest()
    records = request.resource_logs.add().scope_logs.add().log_records
    for n, span_id in enumerate(span_ids):
        record = records.add(time_unix_nano=1_000 + n, trace_id=bytes.fromhex(trace_id), span_id=bytes.fromhex(span_id))
        record.body.string_value = f"line {n}"
    return request


async def test_metric_series_and_points_are_bounded(store: Store) -> None:
    """Past max_series a new series' points are refused; past max_points the oldest points go."""
    rows = points_from_request(_gauge_request([("a", 1), ("b", 1), ("c", 1)]), project=None).rows
    outcome = await store.store_metric_points(rows, max_series=2, max_points=100)
    assert (outcome.stored, outcome.over_series_limit) == (2, 1)
    more = points_from_request(_gauge_request([("a", t) for t in range(2, 7)]), project=None).rows
    await store.store_metric_points(more, max_series=2, max_points=4)
    series = await store.metric_series(name="depth", project=None, max_series=10, max_points=100)
    by_queue = {s["attributes"]["queue"]: [p["value"] for p in s["points"]] for s in series}
    assert by_queue == {"a": [3.0, 4.0, 5.0, 6.0], "b": []}
    again = await store.store_metric_points(more[1:], max_series=2, max_points=4)  # the points still kept
    assert (again.stored, again.duplicates) == (0, 4)


async def test_log_records_are_bounded_and_stored_once(store: Store) -> None:
    """Past max_records the oldest records go; the same request again stores nothing."""
    request = _logs_request("ab" * 16, ["01" * 8, "02" * 8, "03" * 8])
    rows = logs_from_request(request, project=None, received_at=_RECEIVED).rows
    assert await store.store_logs(rows, max_records=2) == 3
    assert await store.store_logs(rows[1:], max_records=2) == 0  # the records still kept: duplicates
    kept = await store.otlp_logs(trace_id="ab" * 16, project=None, limit=10)
    assert kept is not None
    assert [record["body"] for record in kept] == ["line 1", "line 2"]


async def test_records_are_linked_late_and_purged_with_their_run(store: Store) -> None:
    """A record stored before its run is linked by a later pass; purging the run removes both copies."""
    run = RunEvents(workflow_id="shop").start().node("fetch").finish()
    node_span = next(e["data"]["span_id"] for e in run.events if e["kind"] == "node_started")

    request = _logs_request(run.trace_id, [node_span, "0f" * 8])
    rows = logs_from_request(request, project=None, received_at=_RECEIVED).rows
    await store.store_logs(rows, max_records=100)
    assert await store.link_otlp_logs(since="2026-12-03T00:00:00.000000Z") == 0
    await store.append(prepared(run.events))
    assert await store.link_otlp_logs(since="2026-12-03T00:00:00.000000Z") == 1
    assert await store.link_otlp_logs(since="2026-12-03T00:00:00.000000Z") == 0  # once
    detail = await store.get_run(run.run_id)
    assert detail is not None
    assert [line["message"] for line in detail["nodes"][0]["logs"]] == ["line 0"]
    await store.purge(PurgeSelection(run_ids=(run.run_id,), by="test"))
    assert await store.otlp_logs(trace_id=run.trace_id, project=None, limit=10) == []


async def test_records_of_a_known_run_are_linked_at_once_and_read_by_run(store: Store) -> None:
    """A record whose run is stored already is linked when stored; reading by run gives its run and attempt."""
    run = RunEvents(workflow_id="shop").start().node("fetch").finish()
    node_span = next(e["data"]["span_id"] for e in run.events if e["kind"] == "node_started")
    await store.append(prepared(run.events, project="shop"))
    request = _logs_request(run.trace_id, [node_span, "0f" * 8])
    await store.store_logs(logs_from_request(request, project="shop", received_at=_RECEIVED).rows, max_records=100)
    detail = await store.get_run(run.run_id)
    assert detail is not None
    assert [(line["message"], line["source"]) for line in detail["nodes"][0]["logs"]] == [("line 0", "otlp")]
    assert await store.link_otlp_logs(since="2026-12-03T00:00:00.000000Z") == 0
    records = await store.otlp_logs(run_id=run.run_id, project="shop", limit=10)
    assert records is not None
    assert [(r["body"], r["run_id"], r["node_id"]) for r in records] == [
        ("line 0", run.run_id, "fetch"),
        ("line 1", None, None),
    ]
    assert await store.otlp_logs(run_id=run.run_id, project="other", limit=10) is None
    assert await store.otlp_logs(run_id="no-such-run", project=None, limit=10) is None
    assert await store.otlp_logs(trace_id=run.trace_id, project="other", limit=10) == []
    newest = await store.otlp_logs(project=None, limit=1)
    assert newest is not None
    assert [r["body"] for r in newest] == ["line 1"]


async def test_metric_series_are_listed_scoped_and_bounded_in_time(store: Store) -> None:
    """Without a name the series come without points; a project sees its own; since/until bound the points."""
    mine = points_from_request(_gauge_request([("a", t) for t in range(1, 6)]), project="shop").rows
    theirs = points_from_request(_gauge_request([("z", 1)]), project="other").rows
    await store.store_metric_points([*mine, *theirs], max_series=10, max_points=100)
    listed = await store.metric_series(name=None, project=None, max_series=10, max_points=100)
    assert all(s["points"] == [] for s in listed)
    assert {s["project"] for s in listed} == {"shop", "other"}
    series = await store.metric_series(
        name="depth", project="shop", since_ns=2, until_ns=5, max_series=10, max_points=100
    )
    assert [(s["attributes"], [p["time_unix_nano"] for p in s["points"]]) for s in series] == [
        ({"queue": "a"}, [2, 3, 4])
    ]
    assert series[0]["type"] == "gauge"
    assert series[0]["monotonic"] is None


async def test_a_nul_in_otlp_strings_is_stored_with_the_rest(store: Store) -> None:
    """A NUL (U+0000) in a log record's body, severity text, event name, service or scope name, in a metric's
    name and attribute, and in a span's name and status message is stored (as U+FFFD where an engine's text
    cannot hold it) beside the records, points and spans without one: never a failure of the whole request."""
    request = _logs_request("cd" * 16, ["01" * 8, "02" * 8])
    resource_logs = request.resource_logs[0]
    resource_logs.resource.attributes.add(key="service.name").value.string_value = "shop\x00"
    resource_logs.scope_logs[0].scope.name = "scope\x00"
    record = resource_logs.scope_logs[0].log_records[0]
    record.body.string_value = "broke\x00here"
    record.severity_text = "WARN\x00"
    record.event_name = "evt\x00"
    rows = logs_from_request(request, project=None, received_at=_RECEIVED).rows
    assert await store.store_logs(rows, max_records=100) == 2
    kept = await store.otlp_logs(trace_id="cd" * 16, project=None, limit=10)
    assert kept is not None
    assert len(kept) == 2
    gauge = _gauge_request([("q\x00", 1), ("plain", 1)])
    gauge.resource_metrics[0].scope_metrics[0].metrics[0].name = "depth\x00"
    outcome = await store.store_metric_points(
        points_from_request(gauge, project=None).rows, max_series=10, max_points=100
    )
    assert (outcome.stored, outcome.over_series_limit) == (2, 0)
    spans = [
        SpanRow(
            trace_id="cd" * 16,
            span_id=span_id,
            parent_span_id=None,
            name=name,
            kind=1,
            start_ns=1_000,
            end_ns=2_000,
            status_code=2,
            status_message="broke\x00",
            service_name="shop",
            scope_name=None,
            scope_version=None,
            attributes="{}",
            resource="{}",
            events="[]",
            links="[]",
            project=None,
            received_at=_RECEIVED,
        )
        for span_id, name in (("01" * 8, "fetch\x00"), ("02" * 8, "plain"))
    ]
    assert await store.store_spans(spans) == 2
    assert len((await store.get_trace("cd" * 16))[0]) == 2
