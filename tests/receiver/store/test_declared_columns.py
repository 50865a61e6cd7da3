"""Every declared field has its column once every migration ran, on each engine: a field added without a migration
fails here, named, instead of failing ingest or a query later."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path
from typing import Final

import pytest

from flowledger.receiver.store._fold import NodeState, RunState
from flowledger.receiver.store._logs import LOG_COLUMNS
from flowledger.receiver.store._otlp_logs import OTLP_LOG_COLUMNS
from flowledger.receiver.store._otlp_metrics import SERIES_FIELDS
from flowledger.receiver.store._records import NODE_FIELDS, NODE_PAYLOAD_SQL, RUN_FIELDS, stored_fields
from flowledger.receiver.store._spans import SPAN_COLUMNS
from flowledger.receiver.store._sqlite import SqliteStore
from flowledger.receiver.store._stats import STATS_ROW_COLUMNS

_NOT_STORED: Final = frozenset({"seen"})
"""Fold state that lives only while a batch is folded."""


def _declared() -> list[tuple[str, str, str]]:
    """``(table, column, where it is declared)`` for every declared stored field."""
    out = [
        *(("runs", f.name, "RunState") for f in dataclasses.fields(RunState) if f.name not in _NOT_STORED),
        *(("node_runs", f.name, "NodeState") for f in dataclasses.fields(NodeState) if f.name not in _NOT_STORED),
        *(("runs", c, "RUN_FIELDS") for f in stored_fields(RUN_FIELDS) for c in f.sources),
        *(
            ("node_runs", c, "NODE_FIELDS")
            for f in stored_fields(NODE_FIELDS)
            for c in f.sources
            if c not in NODE_PAYLOAD_SQL  # read from the attempt's payloads, not stored
        ),
        *(("logs", c, "LOG_COLUMNS") for c in LOG_COLUMNS),
        *(("spans", c, "SPAN_COLUMNS") for c in SPAN_COLUMNS),
        *(("otlp_logs", c, "OTLP_LOG_COLUMNS") for c in OTLP_LOG_COLUMNS),
        *(("otlp_metric_series", c, "SERIES_FIELDS") for c in SERIES_FIELDS),
        *(("stats_rollup", c.strip(), "STATS_ROW_COLUMNS") for c in STATS_ROW_COLUMNS.split(",")),
    ]
    return list(dict.fromkeys(out))


def _missing(columns: dict[str, dict[str, str]], engine: str) -> list[str]:
    return [
        f"{where}: {column} has no column in {table} on {engine}; add a migration that makes it"
        for table, column, where in _declared()
        if column not in columns.get(table, {})
    ]


def _sqlite_columns(path: Path) -> dict[str, dict[str, str]]:
    async def made() -> None:
        store = SqliteStore(path)
        await store.open()  # every migration runs
        await store.close()

    asyncio.run(made())
    with sqlite3.connect(path) as conn:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")]
        return {t: {str(r[1]): str(r[2]) for r in conn.execute(f"PRAGMA table_info({t})")} for t in tables}


def _postgres_columns(url: str) -> dict[str, dict[str, str]]:
    import asyncpg

    from flowledger.receiver.store.postgres import PostgresStore

    async def read() -> dict[str, dict[str, str]]:
        store = PostgresStore(url)
        await store.open()  # every migration runs
        await store.close()
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'public'"
            )
        finally:
            await conn.close()
        found: dict[str, dict[str, str]] = {}
        for table, column, data_type in rows:
            found.setdefault(str(table), {})[str(column)] = str(data_type)
        return found

    return asyncio.run(read())


def test_every_declared_field_has_its_column_on_sqlite(tmp_path: Path) -> None:
    """The fold's states, the record declarations and the column lists all have columns after SQLite's migrations."""
    assert _missing(_sqlite_columns(tmp_path / "f.db"), "SQLite") == []


def test_every_declared_field_has_its_column_on_postgres(postgres_url: str) -> None:
    """The same after PostgreSQL's migrations, and each fold field's column has the type its annotation gives."""
    from flowledger.receiver.store.postgres._schema import column_type

    columns = _postgres_columns(postgres_url)
    assert _missing(columns, "PostgreSQL") == []
    mistyped = [
        f"{state.__name__}.{f.name} is {columns[table][f.name]} in {table}, not {column_type(f.type)}"
        for state, table in ((RunState, "runs"), (NodeState, "node_runs"))
        for f in dataclasses.fields(state)
        if f.name not in _NOT_STORED and not column_type(f.type).startswith(columns[table][f.name])
    ]
    assert mistyped == []


def test_a_field_without_a_migration_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check fails for a declared column the schema lacks, naming the declaration, the column and the table."""
    monkeypatch.setattr("tests.receiver.store.test_declared_columns.LOG_COLUMNS", (*LOG_COLUMNS, "colour"))
    assert _missing(_sqlite_columns(tmp_path / "f.db"), "SQLite") == [
        "LOG_COLUMNS: colour has no column in logs on SQLite; add a migration that makes it"
    ]
