"""The PostgreSQL migration to producers per project keeps every producer row, with the project it has."""

from __future__ import annotations

import asyncio
from typing import Any, Final

import asyncpg

from flowledger.receiver.store._protocol import EventOutcome, Stats
from flowledger.receiver.store.postgres import PostgresStore, _migrations
from flowledger.receiver.store.postgres._schema import PG_MIGRATIONS, PG_SCHEMA_VERSION
from tests.receiver._support import Producer, simple_run
from tests.receiver.store.conformance.conftest import prepared

_ALPHA: Final = "01a249be-631f-72aa-a7d3-5b1acf0a73d1"
_PLAIN: Final = "01a249be-631f-72aa-a7d3-5b1acf0a73d2"
_ROWS: Final = [
    (_ALPHA, 4, 5, "alpha", "2026-01-01T00:00:00.000000Z", "r1"),
    (_PLAIN, 9, 3, None, "2026-01-02T00:00:00.000000Z", "r2"),
]
"""Producer rows of the schema before: alpha's (complete), and one without a project missing 3 events."""


def _figures(stats: Stats) -> tuple[int, int, int, int]:
    return stats.producers, stats.ledger_events, stats.events_lost, stats.producers_with_gaps


def test_producer_rows_are_kept_and_another_project_may_then_use_their_ids(postgres_url: str) -> None:
    """A database of the schema before opens: its producer rows are kept with their projects and figures, and
    beta's events under alpha's producer id then make a producer of beta's, leaving alpha's row as it was."""
    before = PG_MIGRATIONS.index(_migrations._PRODUCERS_PER_PROJECT)

    async def old_database() -> None:
        conn = await asyncpg.connect(postgres_url)
        try:
            await conn.execute("CREATE TABLE flowledger_schema (version integer NOT NULL)")
            await conn.execute("INSERT INTO flowledger_schema VALUES ($1)", before)
            for script in PG_MIGRATIONS[:before]:
                await conn.execute(script)
            await conn.executemany("INSERT INTO producers VALUES ($1, $2, $3, $4, $5, $6)", _ROWS)
        finally:
            await conn.close()

    async def main() -> dict[str, Any]:
        await old_database()
        store = PostgresStore(postgres_url)
        await store.open()
        try:
            found: dict[str, Any] = {
                "alpha": _figures(await store.stats(project="alpha")),
                "all": (await store.stats()).producers,
            }
            beta = simple_run(Producer(producer_id=_ALPHA), project="beta")
            outcomes = await store.append(prepared(beta.events, project="beta"))
            assert {outcome for outcome, _ in outcomes} == {EventOutcome.ACCEPTED}
            found["alpha after"] = _figures(await store.stats(project="alpha"))
            found["beta"] = _figures(await store.stats(project="beta"))
        finally:
            await store.close()
        conn = await asyncpg.connect(postgres_url)
        try:
            found["version"] = await conn.fetchval("SELECT version FROM flowledger_schema")
            found["kept"] = [
                tuple(row)
                for row in await conn.fetch(
                    "SELECT producer_id, max_seq, events, project, last_ts, last_run_id FROM producers "
                    "WHERE coalesce(project, '') <> 'beta' ORDER BY producer_id"
                )
            ]
        finally:
            await conn.close()
        return found

    assert asyncio.run(main()) == {
        "alpha": (1, 5, 0, 0),
        "all": 2,
        "alpha after": (1, 5, 0, 0),
        "beta": (1, 4, 0, 0),
        "version": PG_SCHEMA_VERSION,
        "kept": _ROWS,
    }
