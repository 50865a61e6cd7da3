"""When a run leaves a statistics group, the stored runs of its hour are read again only if it held an edge."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from flowledger._wire import new_event_id
from flowledger.receiver.store._sqlite import SqliteStore
from flowledger.receiver.store._stats import StatsBy, StatsQuery
from tests.receiver.store.conformance.conftest import prepared
from tests.receiver.store.conformance.test_stats_order_independence import _Producer


async def _hour_reads(path: Path, *, leaving_cost: float, leaving_ms: float) -> tuple[int, dict[str, Any]]:
    """Three runs in agent '' (costs 1/5/9, 10/50/900 ms), then the one given ``leaving_*`` is named agent a1: the
    statements reading the hour's stored runs while that late start is folded, and group ''."""
    store = SqliteStore(path)
    await store.open()
    try:
        p, low, high, moving = _Producer(), new_event_id(), new_event_id(), new_event_id()
        await store.append(
            prepared(
                [
                    p.started(low),
                    p.finished(low, "succeeded", 1.0, 10.0),
                    p.started(high),
                    p.finished(high, "succeeded", 9.0, 900.0),
                    p.finished(moving, "succeeded", leaving_cost, leaving_ms),
                ]
            )
        )
        reads: list[str] = []
        writer = store._writer
        assert writer is not None
        await writer.set_trace_callback(lambda sql: reads.append(sql) if "FROM runs WHERE" in sql else None)
        await store.append(prepared([p.started(moving, agent="a1")]))
        await writer.set_trace_callback(lambda sql: None)
        hour_reads = [sql for sql in reads if "started_at >=" in sql and "status =" in sql]
        groups = {g["key"]: g for g in await store.run_stats(StatsQuery(by=StatsBy.AGENT))}
        return len(hour_reads), groups[""]
    finally:
        await store.close()


def test_a_run_leaving_from_inside_a_group_reads_no_stored_runs(tmp_path: Path) -> None:
    """Cost 5 and 50 ms lie strictly between the group's edges: nothing to find again, no read of the hour (every
    duration, a float, was taken for one that may have held the edge, and each read scans the hour's runs)."""
    reads, group = asyncio.run(_hour_reads(tmp_path / "inside.db", leaving_cost=5.0, leaving_ms=50.0))
    assert reads == 0
    assert group["cost_usd"]["min"] == 1.0
    assert group["cost_usd"]["max"] == 9.0


def test_a_run_leaving_with_an_edge_value_has_the_edge_found_again(tmp_path: Path) -> None:
    """A leaving run that held the group's longest duration makes its hour's runs be read, and the max follows."""
    reads, group = asyncio.run(_hour_reads(tmp_path / "edge.db", leaving_cost=5.0, leaving_ms=5000.0))
    assert reads > 0
    assert group["duration_ms"]["p95"] <= 900.0
    assert group["cost_usd"]["max"] == 9.0
