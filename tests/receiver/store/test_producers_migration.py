"""The SQLite migration to producers per project keeps every producer row, with the project it has."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any, Final

import pytest

from flowledger.receiver.store import _migrations as migrations
from flowledger.receiver.store._migrations import MIGRATIONS, SCHEMA_VERSION, schema_version
from flowledger.receiver.store._protocol import EventOutcome, Stats
from flowledger.receiver.store._sqlite import SqliteStore
from tests.receiver._support import Producer, simple_run
from tests.receiver.store.conformance.conftest import prepared

_ALPHA: Final = "01a249be-631f-72aa-a7d3-5b1acf0a73d1"
_PLAIN: Final = "01a249be-631f-72aa-a7d3-5b1acf0a73d2"
_ROWS: Final = [
    (_ALPHA, 4, 5, "alpha", "2026-01-01T00:00:00.000000Z", "r1"),
    (_PLAIN, 9, 3, None, "2026-01-02T00:00:00.000000Z", "r2"),
]
"""Producer rows of the schema before: alpha's (complete), and one without a project missing 3 events."""


def _old_database(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database at the schema version before producers were per project, holding :data:`_ROWS`."""
    before = MIGRATIONS.index(migrations._PRODUCERS_PER_PROJECT)
    with monkeypatch.context() as patched:
        patched.setattr(migrations, "MIGRATIONS", MIGRATIONS[:before])
        patched.setattr(migrations, "SCHEMA_VERSION", before)
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            migrations.migrate(conn)
            assert schema_version(conn) == before
            conn.executemany("INSERT INTO producers VALUES (?, ?, ?, ?, ?, ?)", _ROWS)
        finally:
            conn.close()


def _figures(stats: Stats) -> tuple[int, int, int, int]:
    return stats.producers, stats.ledger_events, stats.events_lost, stats.producers_with_gaps


def test_producer_rows_are_kept_and_another_project_may_then_use_their_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database of the schema before opens: its producer rows are kept with their projects and figures, and
    beta's events under alpha's producer id then make a producer of beta's, leaving alpha's row as it was."""
    path = tmp_path / "old.db"
    _old_database(path, monkeypatch)

    async def main() -> dict[str, Any]:
        store = SqliteStore(path)
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
            return found
        finally:
            await store.close()

    found = asyncio.run(main())
    assert found == {"alpha": (1, 5, 0, 0), "all": 2, "alpha after": (1, 5, 0, 0), "beta": (1, 4, 0, 0)}
    conn = sqlite3.connect(path)
    try:
        assert schema_version(conn) == SCHEMA_VERSION
        kept = conn.execute(
            "SELECT producer_id, max_seq, events, project, last_ts, last_run_id FROM producers "
            "WHERE ifnull(project, '') <> 'beta' ORDER BY producer_id"
        ).fetchall()
        assert kept == _ROWS
        assert {row[1] for row in conn.execute("PRAGMA index_list(producers)")} >= {
            "producers_once",
            "producers_by_last_ts",
            "producers_by_project",
            "producers_with_gaps",
        }
    finally:
        conn.close()
