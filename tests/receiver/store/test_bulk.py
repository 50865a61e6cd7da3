"""Multi-row inserts: every row lands once, in chunks, with the statement's tail applied."""

from __future__ import annotations

from pathlib import Path

import aiosqlite
import pytest

from flowledger.receiver.store import _bulk
from flowledger.receiver.store._bulk import in_list, insert_rows


@pytest.mark.asyncio
async def test_rows_past_one_chunk_all_land_and_the_tail_applies(tmp_path: Path) -> None:
    """600 rows (three statements) are inserted; an ON CONFLICT tail merges rows that repeat a key."""
    async with aiosqlite.connect(tmp_path / "bulk.db") as conn:
        await conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, n INTEGER NOT NULL, s TEXT)")
        rows = [(i, 1, f"row {i}") for i in range(600)]
        await insert_rows(conn, "INSERT INTO t (k, n, s)", rows, width=3)
        again = [(i, 1, None) for i in range(0, 600, 2)]
        await insert_rows(
            conn, "INSERT INTO t (k, n, s)", again, width=3, tail=" ON CONFLICT (k) DO UPDATE SET n = n + 1"
        )
        (count, total, texts) = next(iter(await conn.execute_fetchall("SELECT count(*), sum(n), count(s) FROM t")))
    assert (count, total, texts) == (600, 900, 600)


@pytest.mark.asyncio
async def test_a_small_parameter_limit_means_smaller_statements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an old SQLite's limit of 999 host parameters, rows go in statements that fit it (99 rows of 10), the rest
    in a multiple of 32 rows and what is left."""
    monkeypatch.setattr(_bulk, "_max_params", lambda: 999)
    statements: list[str] = []
    async with aiosqlite.connect(tmp_path / "bulk.db") as conn:
        await conn.execute("CREATE TABLE t (a, b, c, d, e, f, g, h, i, j)")
        await conn.set_trace_callback(statements.append)
        rows = [tuple(range(10))] * 450
        await insert_rows(conn, "INSERT INTO t (a, b, c, d, e, f, g, h, i, j)", rows, width=10)
        await conn.set_trace_callback(None)  # type: ignore[arg-type]  # aiosqlite's annotation omits None, which sqlite3 takes
        (count,) = next(iter(await conn.execute_fetchall("SELECT count(*) FROM t")))
    assert count == 450
    inserts = [s for s in statements if s.startswith("INSERT")]
    assert [s.count("(0,") for s in inserts] == [99, 99, 99, 99, 32, 22]


@pytest.mark.asyncio
async def test_batches_of_any_size_make_few_statement_texts(tmp_path: Path) -> None:
    """Inserting 1 to 700 rows at a time uses at most 39 statement texts (256 rows, seven multiples of 32, and
    1 to 31 rows), so they stay prepared; every row lands; a padded IN list matches exactly the listed rows."""
    shapes: set[int] = set()  # the rows of each statement run (the traced text holds the values, not the marks)
    async with aiosqlite.connect(tmp_path / "bulk.db") as conn:
        await conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, s TEXT)")

        def note(sql: str) -> None:
            if sql.startswith("INSERT"):
                shapes.add(sql.count("(") - 1)

        await conn.set_trace_callback(note)
        first = 0
        for size in range(1, 701):
            await insert_rows(conn, "INSERT INTO t (k, s)", [(first + i, "x") for i in range(size)], width=2)
            first += size
        await conn.set_trace_callback(None)  # type: ignore[arg-type]  # aiosqlite's annotation omits None
        (count,) = next(iter(await conn.execute_fetchall("SELECT count(*) FROM t")))
        marks, params = in_list([3, 5, 7])
        found = await conn.execute_fetchall(f"SELECT k FROM t WHERE k IN ({marks}) ORDER BY k", params)
    assert count == first == 700 * 701 // 2
    assert len(shapes) <= 39
    assert len(params) == 32
    assert [row[0] for row in found] == [3, 5, 7]
