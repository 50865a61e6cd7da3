"""The SQLite store's kept summary counts (``run_counts``) hold costs past 2**63 nano-dollars: a database made before
they did is counted again from its runs when it opens, and its triggers keep the counts exact from then on."""

from __future__ import annotations

import asyncio
import sqlite3
from fractions import Fraction
from pathlib import Path
from typing import Any, Final

import pytest

from flowledger._money import NANOS_PER_USD
from flowledger.receiver.store import _migrations as migrations
from flowledger.receiver.store._migrations import MIGRATIONS, SCHEMA_VERSION, migrate, schema_version
from flowledger.receiver.store._sqlite import SqliteStore
from flowledger.receiver.store._views import RunFilter

_COSTS: Final = {"r1": 1e10, "r2": 2.0**53, "r3": 0.25, "r4": None}
_INT64_MAX: Final = 2**63 - 1
_KEY: Final = (
    "coalesce(workflow_id, ''), status, coalesce(trigger_type, ''), coalesce(dry_run, -1), coalesce(project, '')"
)


def _exact_nanos(*costs: float | None) -> int:
    """The nano-dollars of costs that are whole nano-dollars in binary too (1e10, 2**53, 0.25, 0.125)."""
    nanos = [Fraction(c) * NANOS_PER_USD for c in costs if c is not None]
    assert all(n.denominator == 1 for n in nanos)
    return int(sum(nanos))


def _summary(path: Path) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        store = SqliteStore(path)
        await store.open()
        try:
            return await store.run_summary(RunFilter())
        finally:
            await store.close()

    return asyncio.run(read())


def _kept(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    """run_counts as (key..., runs, nano-dollars), the rows with runs."""
    return [
        (*row[:6], row[6] * NANOS_PER_USD + row[7])
        for row in conn.execute("SELECT * FROM run_counts WHERE runs > 0 ORDER BY 1, 2, 3, 4, 5")
    ]


def _counted(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    """The same counted over runs in Python, exact."""
    rows = conn.execute(f"SELECT {_KEY}, cost_usd FROM runs").fetchall()
    groups: dict[tuple[Any, ...], list[Any]] = {}
    for *key, usd in rows:
        group = groups.setdefault(tuple(key), [0, 0])
        group[0] += 1
        group[1] += _exact_nanos(usd)
    return [(*key, runs, nanos) for key, (runs, nanos) in sorted(groups.items())]


def test_a_database_with_capped_costs_is_counted_again_and_kept_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs of 1e10 and 2**53 USD stored before: their kept cost was cut to 2**63 - 1 nano-dollars; after the
    migration the summary is exact, and stays so through replaces, updates and deletes."""
    path = tmp_path / "old.db"
    before = MIGRATIONS.index(migrations._RUN_COUNTS_COST_UNCAPPED)
    monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS[:before])
    monkeypatch.setattr(migrations, "SCHEMA_VERSION", before)
    conn = sqlite3.connect(path, isolation_level=None)
    migrations.migrate(conn)
    monkeypatch.undo()
    conn.executemany(
        "INSERT INTO runs (run_id, status, workflow_id, started_at, cost_usd) "
        "VALUES (?, 'succeeded', 'w', '2026-01-01T00:00:00.000000Z', ?)",
        list(_COSTS.items()),
    )
    [(capped,)] = conn.execute("SELECT cost_usd_nanos FROM run_counts").fetchall()
    assert capped == pytest.approx(2 * _INT64_MAX)  # each big run cut to 2**63 - 1, then added as floats
    assert migrate(conn) == SCHEMA_VERSION - before
    assert schema_version(conn) == SCHEMA_VERSION
    assert _kept(conn) == _counted(conn)
    conn.close()
    summary = _summary(path)
    assert summary["total"] == len(_COSTS)
    assert summary["total_cost_usd_nanos"] == _exact_nanos(*_COSTS.values())
    assert summary["total_cost_usd"] == 1e10 + 2.0**53 + 0.25

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(
            "INSERT OR REPLACE INTO runs (run_id, status, workflow_id, started_at, cost_usd) "
            "VALUES ('r1', 'failed', 'w', '2026-01-01T00:00:00.000000Z', 123456789.125)"
        )
        conn.execute("UPDATE runs SET cost_usd = 9300000000.5 WHERE run_id = 'r4'")
        conn.execute("DELETE FROM runs WHERE run_id = 'r3'")
        assert _kept(conn) == _counted(conn)
    finally:
        conn.close()
    assert _summary(path)["total_cost_usd_nanos"] == _exact_nanos(123456789.125, 2.0**53, 9300000000.5)
