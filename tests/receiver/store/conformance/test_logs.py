"""The Store conformance suite, log lines: folded from node_logs events, appended (OTLP), read, paged, rebuilt."""

from __future__ import annotations

import pytest

from flowledger.receiver.store._logs import LOGS_INLINE_MAX, LogDrop, LogRow, LogSource, level_from_severity
from flowledger.receiver.store._protocol import Store
from tests.receiver._support import RunEvents
from tests.receiver.store.conformance.conftest import prepared

pytestmark = pytest.mark.asyncio


async def test_node_logs_land_on_their_attempt_and_stay_out_of_others(store: Store) -> None:
    """A node_logs event's lines show under its attempt in get_run, in order; other attempts get none."""
    run = RunEvents().start().node("fetch")
    fetch_span = run.last_span
    run.logs("fetch", ["one", "two"], dropped_lines=3).node("price").finish()
    await store.append(prepared(run.events))
    detail = await store.get_run(run.run_id)
    assert detail is not None
    by_node = {n["node_id"]: n for n in detail["nodes"]}
    assert [line["message"] for line in by_node["fetch"]["logs"]] == ["one", "two"]
    assert by_node["fetch"]["logs"][0]["level"] == "INFO"
    assert by_node["fetch"]["logs"][0]["logger"] == "shop.steps"
    assert by_node["fetch"]["logs_dropped"] == {"lines": 3, "bytes": 30}
    assert by_node["fetch"]["span_id"] == fetch_span
    assert by_node["price"]["logs"] == []
    assert by_node["price"]["logs_dropped"] is None


async def test_many_lines_are_linked_and_paged(store: Store) -> None:
    """Past LOGS_INLINE_MAX lines the run's detail links to the attempt's lines, which page by id and level."""
    run = RunEvents().start().node("fetch")
    run.logs("fetch", [f"line {i}" for i in range(LOGS_INLINE_MAX + 5)])
    run.logs("fetch", ["bad"], level=40).finish()
    await store.append(prepared(run.events))
    detail = await store.get_run(run.run_id)
    assert detail is not None
    node = detail["nodes"][0]
    assert len(node["logs"]) == LOGS_INLINE_MAX
    assert node["logs_url"] == f"/api/runs/{run.run_id}/attempts/{run.last_span}/logs"
    page = await store.attempt_logs(run.run_id, run.last_span, limit=100)
    assert page is not None
    assert page.more
    assert page.lines[0]["message"] == "line 0"
    rest = await store.attempt_logs(run.run_id, run.last_span, after_id=page.lines[-1]["id"])
    assert rest is not None
    assert not rest.more
    assert len(page.lines) + len(rest.lines) == LOGS_INLINE_MAX + 6
    errors = await store.attempt_logs(run.run_id, run.last_span, min_level=40)
    assert errors is not None
    assert [line["message"] for line in errors.lines] == ["bad"]
    assert await store.attempt_logs(run.run_id, run.last_span, project="other") is None
    assert await store.attempt_logs("0192f0e0-0000-7000-8000-000000000000", None) is None


async def test_appended_otlp_lines_survive_a_rebuild(store: Store) -> None:
    """append_logs stores OTLP lines beside the SDK's; a rebuild refolds the SDK's and keeps the OTLP ones."""
    run = RunEvents().start().node("fetch")
    run.logs("fetch", ["from the sdk"], dropped_lines=2).finish()
    await store.append(prepared(run.events))
    otlp = LogRow(
        run_id=run.run_id,
        span_id=run.last_span,
        ts="2026-01-01T00:00:00.000000Z",
        level=level_from_severity(17),
        level_name="ERROR",
        logger="java.app",
        message="from otlp",
        source=LogSource.OTLP,
    )
    assert await store.append_logs([otlp], [LogDrop(run.run_id, run.last_span, 1, 5)]) == 1
    assert (await store.rebuild()).clean
    page = await store.attempt_logs(run.run_id, run.last_span)
    assert page is not None
    assert sorted(line["message"] for line in page.lines) == ["from otlp", "from the sdk"]
    assert {line["source"] for line in page.lines} == {"sdk", "otlp"}
    assert page.dropped_lines == 2  # the SDK's count, refolded from the ledger
