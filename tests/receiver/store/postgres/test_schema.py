"""The PostgreSQL engine's schema: the ledger refuses edits, versions are checked, foreign tables are refused."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from flowledger._exceptions import SchemaVersionError, StoreError
from flowledger.receiver.store.postgres import PostgresStore, _migrations, _schema
from flowledger.receiver.store.postgres._schema import PG_SCHEMA_VERSION
from tests.receiver._support import RunEvents, simple_run, typical_run
from tests.receiver.store.conformance.conftest import prepared


def _run(url: str, work: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        conn = await asyncpg.connect(url)
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(main())


def _filled(url: str) -> None:
    async def main() -> None:
        store = PostgresStore(url)
        await store.open()
        try:
            await store.append(prepared([e for _ in range(65) for e in simple_run().events]))  # a stored subtree
        finally:
            await store.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("statement", "refusal"),
    [
        ("UPDATE ledger SET kind = 'x' WHERE seq = 1", "UPDATE is refused"),
        ("DELETE FROM ledger WHERE seq = 3", "DELETE is refused"),
        ("TRUNCATE ledger CASCADE", "TRUNCATE is refused"),
        ("UPDATE payloads SET body = '{}' WHERE seq = 1", "payloads are write-once"),
        ("UPDATE merkle_nodes SET hash = '' ", "UPDATE is refused"),
        ("DELETE FROM merkle_nodes", "DELETE is refused"),
        ("TRUNCATE merkle_nodes", "the Merkle tree is append-only: TRUNCATE is refused"),
        (
            "INSERT INTO ledger SELECT seq + 500, event_id || 'x', run_id, kind, ts, received_at, entry, payload_hash, "
            "prev_hash, hash FROM ledger WHERE seq = 1",
            "rows go right after the last one",
        ),
        (
            "INSERT INTO ledger SELECT seq + 1000, event_id || 'x', run_id, kind, ts, received_at, entry, "
            "payload_hash, prev_hash, hash FROM ledger",
            "rows go right after the last one",
        ),
    ],
)
def test_the_database_refuses_edits_of_the_ledger(postgres_url: str, statement: str, refusal: str) -> None:
    """UPDATE, DELETE and TRUNCATE of the ledger, edits of payloads and tree, and rows not right after the last fail."""
    _filled(postgres_url)
    with pytest.raises(asyncpg.PostgresError, match=refusal):
        _run(postgres_url, lambda conn: conn.execute(statement))


def test_a_newer_schema_is_refused_untouched(postgres_url: str) -> None:
    """A database from a newer flowledger: SchemaVersionError naming both versions, the version left as it was."""
    _filled(postgres_url)
    _run(postgres_url, lambda conn: conn.execute("UPDATE flowledger_schema SET version = version + 1"))

    async def main() -> None:
        for readonly in (False, True):
            with pytest.raises(SchemaVersionError, match=f"newer than the {PG_SCHEMA_VERSION}"):
                await PostgresStore(postgres_url, readonly=readonly).open()

    asyncio.run(main())
    assert _run(postgres_url, lambda conn: conn.fetchval("SELECT version FROM flowledger_schema")) == (
        PG_SCHEMA_VERSION + 1
    )


def test_another_applications_tables_are_refused(postgres_url: str) -> None:
    """A database with a runs table flowledger did not make is not touched."""
    _run(postgres_url, lambda conn: conn.execute("CREATE TABLE runs (id integer)"))

    async def main() -> None:
        with pytest.raises(StoreError, match="did not make"):
            await PostgresStore(postgres_url).open()

    asyncio.run(main())


def test_two_stores_opening_together_migrate_once(postgres_url: str) -> None:
    """Receivers starting at the same moment: the migration runs under a lock, once; both open."""

    async def main() -> None:
        stores = [PostgresStore(postgres_url) for _ in range(4)]
        await asyncio.gather(*(store.open() for store in stores))
        for store in stores:
            await store.close()

    asyncio.run(main())
    assert _run(postgres_url, lambda conn: conn.fetchval("SELECT version FROM flowledger_schema")) == PG_SCHEMA_VERSION


def test_a_database_made_before_ids_were_per_project_keeps_its_runs(
    postgres_url: str, postgres_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database of the schema before per-project ids opens: its runs, attempts and logs read the same, the
    ledger verifies, a rebuild finds no drift, and another project may then use the same ids."""
    run = typical_run(project="alpha").logs("stock", ["picked 3 items"])
    old_url = postgres_url + "_old"
    _run(postgres_server, lambda conn: conn.execute(f'CREATE DATABASE "{old_url.rsplit("/", 1)[1]}"'))

    async def fill_source() -> dict[str, Any] | None:
        store = PostgresStore(postgres_url)
        await store.open()
        try:
            await store.append(prepared(run.events))
            return await store.get_run(run.run_id)
        finally:
            await store.close()

    expected = asyncio.run(fill_source())
    assert expected is not None
    before = _schema.PG_MIGRATIONS.index(_migrations._IDS_PER_PROJECT) - 1  # node_runs without project too
    with monkeypatch.context() as patched:
        patched.setattr(_schema, "PG_MIGRATIONS", _schema.PG_MIGRATIONS[:before])
        patched.setattr(_schema, "PG_SCHEMA_VERSION", before)
        _run(old_url, lambda conn: _schema.migrate_postgres(conn, name="old"))

    asyncio.run(_copy_rows(postgres_url, old_url))
    assert _run(old_url, lambda conn: conn.fetchval("SELECT version FROM flowledger_schema")) == before

    async def check() -> None:
        store = PostgresStore(old_url)
        await store.open()
        try:
            assert await store.get_run(run.run_id) == expected
            assert await store.get_run(run.run_id, project="alpha") == expected
            assert (await store.verify()).ok
            assert (await store.rebuild()).clean
            squat = [{**event, "project": "beta"} for event in run.events[:1]]
            assert [outcome.value for outcome, _ in await store.append(prepared(squat))] == ["accepted"]
            assert await store.get_run(run.run_id, project="alpha") == expected
        finally:
            await store.close()

    asyncio.run(check())
    assert _run(old_url, lambda conn: conn.fetchval("SELECT version FROM flowledger_schema")) == PG_SCHEMA_VERSION
    attempts = "SELECT count(*) FROM node_runs WHERE project = 'alpha'"
    assert _run(old_url, lambda conn: conn.fetchval(attempts)) == 6


_COLUMNS = "SELECT column_name FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position"


async def _copy_rows(source_url: str, target_url: str, *, skip: tuple[str, ...] = ()) -> None:
    """Every row of the database at ``source_url`` into the one at ``target_url`` (of an older schema: the columns
    both have), but those of the tables ``skip`` names."""
    source, target = await asyncpg.connect(source_url), await asyncpg.connect(target_url)
    try:
        tables = [r[0] for r in await target.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        for table in tables:
            old = [r[0] for r in await target.fetch(_COLUMNS, table)]
            new = {r[0] for r in await source.fetch(_COLUMNS, table)}
            columns = [c for c in old if c in new]
            rows = await source.fetch(f"SELECT {', '.join(columns)} FROM {table} ORDER BY 1")
            if rows and table != "flowledger_schema" and table not in skip:
                await target.copy_records_to_table(table, records=[tuple(r) for r in rows], columns=columns)
    finally:
        await source.close()
        await target.close()


def test_a_database_made_before_long_values_were_keyed_by_digest_keeps_its_attributes_and_metrics(
    postgres_url: str, postgres_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database of the schema before attribute values and metric labels were keyed by their digest opens: its
    attribute filters and metric totals answer the same, a later batch adds to its metric rows, and values longer
    than an index entry holds are then stored and found (they failed their whole batch before)."""
    from flowledger.receiver.store._custom_metrics import CustomMetricQuery
    from flowledger.receiver.store._protocol import EventOutcome, RunQuery

    def with_metric(run: RunEvents, labels: dict[str, str]) -> RunEvents:
        finished = next(e for e in run.events if e["kind"] == "node_finished")
        finished["data"]["workflow_id"] = run.workflow_id
        finished["data"]["metrics"] = [
            {"name": "hits", "labels": labels, "count": 1, "sum": 1.0, "min": 1.0, "max": 1.0, "value": 1.0}
        ]
        return run

    short, again = RunEvents(), RunEvents()
    again.clock_ns = short.clock_ns  # its attempt finishes in the same hour: the same metric row
    short = with_metric(short.start(attributes={"region": "eu"}).node("ask").finish(), {"tier": "gold"})
    again = with_metric(again.start().node("ask").finish(), {"tier": "gold"})
    old_url = postgres_url + "_old"
    _run(postgres_server, lambda conn: conn.execute(f'CREATE DATABASE "{old_url.rsplit("/", 1)[1]}"'))

    async def answers(store: PostgresStore) -> tuple[Any, ...]:
        listed = await store.list_runs(RunQuery(attributes=(("region", "eu"),)))
        metrics = await store.custom_metrics(CustomMetricQuery(labels={"tier": "gold"}))
        return [r["run_id"] for r in listed.runs], [(m["labels"], m["count"]) for m in metrics]

    async def fill_source() -> tuple[Any, ...]:
        store = PostgresStore(postgres_url)
        await store.open()
        try:
            await store.append(prepared(short.events))
            return await answers(store)
        finally:
            await store.close()

    expected = asyncio.run(fill_source())
    assert expected == ([short.run_id], [({"tier": "gold"}, 1)])
    before = _schema.PG_MIGRATIONS.index(_migrations._LONG_KEYS_BY_DIGEST)
    with monkeypatch.context() as patched:
        patched.setattr(_schema, "PG_MIGRATIONS", _schema.PG_MIGRATIONS[:before])
        patched.setattr(_schema, "PG_SCHEMA_VERSION", before)
        _run(old_url, lambda conn: _schema.migrate_postgres(conn, name="old"))
    asyncio.run(_copy_rows(postgres_url, old_url, skip=("search_text",)))  # no binary tsvector: the rebuild's
    assert _run(old_url, lambda conn: conn.fetchval("SELECT version FROM flowledger_schema")) == before
    long_value = "".join(chr(0x4E00 + i * 13 % 20_000) for i in range(1024))
    long_labels = {f"l{i}": long_value[i * 128 : (i + 1) * 128] for i in range(8)}
    long_run = with_metric(RunEvents().start(attributes={"note": long_value}).node("ask").finish(), long_labels)

    async def check() -> None:
        store = PostgresStore(old_url)
        await store.open()
        try:
            assert await answers(store) == expected
            outcomes = await store.append(prepared(again.events + long_run.events))
            assert {outcome for outcome, _ in outcomes} == {EventOutcome.ACCEPTED}
            assert await answers(store) == ([short.run_id], [({"tier": "gold"}, 2)])  # added to the migrated row
            found = await store.list_runs(RunQuery(attributes=(("note", long_value),)))
            assert [r["run_id"] for r in found.runs] == [long_run.run_id]
            metrics = await store.custom_metrics(CustomMetricQuery(labels=long_labels))
            assert [(m["labels"], m["count"]) for m in metrics] == [(long_labels, 1)]
            assert (await store.verify()).ok
            assert (await store.rebuild()).clean
        finally:
            await store.close()

    asyncio.run(check())
    assert _run(old_url, lambda conn: conn.fetchval("SELECT version FROM flowledger_schema")) == PG_SCHEMA_VERSION


def test_a_database_of_the_schema_before_the_analytics_is_brought_up_and_filled_by_a_rebuild(
    postgres_url: str,
) -> None:
    """A database of the schema before error groups, statistics, custom metrics and search migrates on open; its new
    tables start empty, and a rebuild folds them from the ledger to what ingest would have made."""
    from flowledger.receiver.store._error_groups import ErrorGroupQuery
    from flowledger.receiver.store._protocol import RunQuery
    from flowledger.receiver.store._stats import StatsBy, StatsQuery
    from flowledger.receiver.store.postgres._schema import PG_MIGRATIONS
    from tests.receiver._support import typical_run

    before = PG_MIGRATIONS.index(_migrations._ERROR_GROUPS_AND_STATISTICS)

    async def before_analytics(conn: asyncpg.Connection) -> None:
        await conn.execute("CREATE TABLE flowledger_schema (version integer NOT NULL)")
        await conn.execute("INSERT INTO flowledger_schema VALUES ($1)", before)
        for script in PG_MIGRATIONS[:before]:
            await conn.execute(script)

    _run(postgres_url, before_analytics)
    runs = [typical_run() for _ in range(3)]

    async def answers(store: PostgresStore) -> tuple[Any, ...]:
        return (
            await store.error_groups(ErrorGroupQuery()),
            await store.run_stats(StatsQuery(by=StatsBy.NODE)),
            [r["run_id"] for r in (await store.list_runs(RunQuery(search="broke"))).runs],
        )

    async def main() -> None:
        store = PostgresStore(postgres_url)
        await store.open()
        try:
            await store.append(prepared([e for run in runs for e in run.events]))
            expected = await answers(store)
            assert expected[0][0]["count"] == 3
            assert len(expected[2]) == 3
            for table in ("error_groups", "stats_rollup", "stats_hist", "search_text", "run_attributes"):
                await _emptied(postgres_url, table)  # as a database migrated from before them has them
            assert (await answers(store))[0] == []
            await store.rebuild()
            assert await answers(store) == expected
        finally:
            await store.close()

    asyncio.run(main())
    assert _run(postgres_url, lambda conn: conn.fetchval("SELECT version FROM flowledger_schema")) == PG_SCHEMA_VERSION


async def _emptied(url: str, table: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"DELETE FROM {table}")
    finally:
        await conn.close()
