"""Stored log lines: folded from node_logs events, appended directly (OTLP), read per attempt, purged, rebuilt."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from flowledger.receiver._config import IngestLimits
from flowledger.receiver._validate import prepare_event
from flowledger.receiver.store._event import PreparedEvent
from flowledger.receiver.store._logs import LOGS_INLINE_MAX, LogDrop, LogRow, LogSource, level_from_severity
from flowledger.receiver.store._protocol import PurgeSelection
from flowledger.receiver.store._sqlite import SqliteStore
from tests.receiver._support import RunEvents


def _prepared(events: list[dict[str, Any]]) -> list[PreparedEvent]:
    out = []
    for i, raw in enumerate(events):
        event = prepare_event(raw, i, IngestLimits(), None)
        assert isinstance(event, PreparedEvent), event
        out.append(event)
    return out


def test_node_logs_land_on_their_attempt_and_stay_out_of_others(tmp_path: Path) -> None:
    """A node_logs event's lines show under its attempt in get_run, in order; other attempts get none."""
    run = RunEvents().start().node("fetch")
    fetch_span = run.last_span
    run.logs("fetch", ["one", "two"], dropped_lines=3).node("price").finish()

    async def main() -> dict[str, Any] | None:
        store = SqliteStore(tmp_path / "l.db")
        await store.open()
        try:
            await store.append(_prepared(run.events))
            return await store.get_run(run.run_id)
        finally:
            await store.close()

    detail = asyncio.run(main())
    assert detail is not None
    by_node = {n["node_id"]: n for n in detail["nodes"]}
    assert [line["message"] for line in by_node["fetch"]["logs"]] == ["one", "two"]
    assert by_node["fetch"]["logs"][0]["level"] == "INFO"
    assert by_node["fetch"]["logs"][0]["logger"] == "shop.steps"
    assert by_node["fetch"]["logs_dropped"] == {"lines": 3, "bytes": 30}
    assert by_node["fetch"]["span_id"] == fetch_span
    assert by_node["price"]["logs"] == []
    assert by_node["price"]["logs_dropped"] is None


def test_many_lines_are_linked_and_paged(tmp_path: Path) -> None:
    """Past LOGS_INLINE_MAX lines the run's detail links to the attempt's lines, which page by id and level."""
    run = RunEvents().start().node("fetch")
    run.logs("fetch", [f"line {i}" for i in range(LOGS_INLINE_MAX + 5)])
    run.logs("fetch", ["bad"], level=40).finish()

    async def main() -> None:
        store = SqliteStore(tmp_path / "l.db")
        await store.open()
        try:
            await store.append(_prepared(run.events))
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
        finally:
            await store.close()

    asyncio.run(main())


def test_appended_otlp_lines_survive_a_rebuild_and_a_purge_removes_all(tmp_path: Path) -> None:
    """append_logs stores OTLP lines; rebuild refolds SDK lines and keeps OTLP ones; purge erases both."""
    run = RunEvents().start().node("fetch")
    run.logs("fetch", ["from the sdk"]).finish()
    path = tmp_path / "l.db"

    async def main() -> None:
        store = SqliteStore(path)
        await store.open()
        try:
            await store.append(_prepared(run.events))
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
            drift = await store.rebuild()
            assert drift.clean
            page = await store.attempt_logs(run.run_id, run.last_span)
            assert page is not None
            assert sorted(line["message"] for line in page.lines) == ["from otlp", "from the sdk"]
            assert {line["source"] for line in page.lines} == {"sdk", "otlp"}
            report = await store.purge(PurgeSelection(run_ids=(run.run_id,), by="test"))
            assert report.runs == [run.run_id]
        finally:
            await store.close()

    asyncio.run(main())
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM logs").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM log_drops").fetchone()[0] == 0
    conn.close()


def test_severity_numbers_map_onto_python_levels() -> None:
    """OTLP severity ranges map to TRACE 5, DEBUG 10, INFO 20, WARN 30, ERROR 40, FATAL 50; unspecified is 0."""
    assert [level_from_severity(n) for n in (0, 1, 5, 9, 13, 17, 21, 24, 25)] == [0, 5, 10, 20, 30, 40, 50, 50, 0]
