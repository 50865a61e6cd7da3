"""OTLP logs and metrics in the SQLite store: bounded tables, exactly once, linking, and purges."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

from flowledger.receiver.otlp._logs import logs_from_request
from flowledger.receiver.otlp._metrics import points_from_request
from flowledger.receiver.store._protocol import PurgeSelection
from flowledger.receiver.store._sqlite import SqliteStore
from tests.receiver._support import RunEvents
from tests.receiver.store.conformance.conftest import prepared


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


async def _open(path: Path) -> SqliteStore:
    store = SqliteStore(path)
    await store.open()
    return store


def test_metric_series_and_points_are_bounded(tmp_path: Path) -> None:
    """Past max_series a new series' points are refused; past max_points the oldest points go."""

    async def main() -> None:
        store = await _open(tmp_path / "m.db")
        try:
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
        finally:
            await store.close()

    asyncio.run(main())


def test_log_records_are_bounded_and_stored_once(tmp_path: Path) -> None:
    """Past max_records the oldest records go; the same request again stores nothing."""

    async def main() -> None:
        store = await _open(tmp_path / "l.db")
        try:
            request = _logs_request("ab" * 16, ["01" * 8, "02" * 8, "03" * 8])
            rows = logs_from_request(request, project=None, received_at="2026-12-03T12:00:00.000000Z").rows
            assert await store.store_logs(rows, max_records=2) == 3
            assert await store.store_logs(rows[1:], max_records=2) == 0  # the records still kept: duplicates
            kept = await store.otlp_logs(trace_id="ab" * 16, project=None, limit=10)
            assert kept is not None
            assert [record["body"] for record in kept] == ["line 1", "line 2"]
        finally:
            await store.close()

    asyncio.run(main())


def test_records_are_linked_late_and_purged_with_their_run(tmp_path: Path) -> None:
    """A record stored before its run is linked by a later pass; purging the run removes both copies."""
    run = RunEvents(workflow_id="shop").start().node("fetch").finish()
    node_span = next(e["data"]["span_id"] for e in run.events if e["kind"] == "node_started")

    async def main() -> None:
        store = await _open(tmp_path / "p.db")
        try:
            request = _logs_request(run.trace_id, [node_span, "0f" * 8])
            rows = logs_from_request(request, project=None, received_at="2026-12-03T12:00:00.000000Z").rows
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
        finally:
            await store.close()

    asyncio.run(main())
