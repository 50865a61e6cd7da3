"""PostgreSQL's run listing: a page after a deep cursor reads from the cursor on, not every run before it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg

from flowledger.receiver.store._views import RunPageCursor
from flowledger.receiver.store.postgres import PostgresStore
from flowledger.receiver.store.postgres._store import _NEWEST_FIRST, _RUN_SELECT, _page_after

_RUNS = 3_000


def _rows_examined(plan: Any) -> int:
    """Rows each scan of the plan produced plus those its filter removed, summed over the plan."""
    node = plan.get("Plan", plan)
    here = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0) if "Scan" in node["Node Type"] else 0
    return int(here) + sum(_rows_examined(child) for child in node.get("Plans", ()))


def test_a_deep_page_is_ranges_of_the_listing_index(postgres_url: str) -> None:
    """After a cursor 2,000 runs deep, a page of 50 examines about 50 rows (one OR of the keyset's parts was a
    filter over every run before the cursor), and holds the same runs as a plain ORDER BY ... OFFSET."""

    async def main() -> tuple[int, list[str], list[str]]:
        store = PostgresStore(postgres_url)
        await store.open()
        conn = await asyncpg.connect(postgres_url)
        try:
            await conn.execute(
                "INSERT INTO runs (run_id, workflow_id, status, started_at) "
                "SELECT 'r' || lpad(i::text, 6, '0'), 'wf', 'succeeded', "
                """to_char(timestamp '2026-01-01' + i * interval '1 second', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') """
                f"FROM generate_series(1, {_RUNS}) i"
            )
            await conn.execute("INSERT INTO runs (run_id, workflow_id, status) VALUES ('unstarted', 'wf', 'running')")
            await conn.execute("ANALYZE runs")
            await conn.execute("SET enable_seqscan = off")  # a table this small would otherwise be read whole
            select = f"SELECT {_RUN_SELECT} FROM runs r"
            at = await conn.fetchrow(f"{select} {_NEWEST_FIRST} OFFSET 1999 LIMIT 1")
            cursor = RunPageCursor.of(dict(at))
            sql, params = _page_after(select, "", [], cursor, fetch=50)
            (plan,) = json.loads(await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *params))
            page = [row["run_id"] for row in await conn.fetch(sql, *params)]
            tail = await conn.fetch(f"{select} {_NEWEST_FIRST} OFFSET 2000 LIMIT 1001")
            return _rows_examined(plan), page, [row["run_id"] for row in tail]
        finally:
            await conn.close()
            await store.close()

    examined, page, tail = asyncio.run(main())
    assert examined <= 60, f"a page 2,000 runs deep examined {examined} rows"
    assert page == tail[:50]
    assert tail[-1] == "unstarted"  # the runs without a start come after every started one
