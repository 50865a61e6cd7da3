"""verify on real SQLite files edited by hand: producer columns of rows that keep their entry's bytes, and the
stored Merkle tree nodes it names when they are missing."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from flowledger.receiver.store._protocol import VerifyReport
from flowledger.receiver.store._sqlite import SqliteStore
from tests.receiver._support import RunEvents, simple_run
from tests.receiver.store._rewrite import store_entry_bytes, tamper
from tests.receiver.store.conformance.conftest import prepared


def _ledger(path: Path, *runs: RunEvents) -> None:
    async def main() -> None:
        store = SqliteStore(path)
        await store.open()
        try:
            await store.append(prepared([e for run in runs for e in run.events]))
        finally:
            await store.close()

    asyncio.run(main())


def _verify(path: Path) -> VerifyReport:
    async def main() -> VerifyReport:
        store = SqliteStore(path)
        await store.open()
        try:
            return await store.verify()
        finally:
            await store.close()

    return asyncio.run(main())


def _with_entry_bytes(path: Path) -> None:
    conn = sqlite3.connect(path)
    store_entry_bytes(conn)
    conn.commit()
    conn.close()


def test_producer_columns_of_a_row_keeping_its_entry_bytes_are_checked(tmp_path: Path) -> None:
    """A row that stores its entry's bytes: an edited producer_id or producer_seq column fails at that row."""
    db = tmp_path / "ledger.db"
    _ledger(db, simple_run())
    _with_entry_bytes(db)
    assert _verify(db).ok
    for column, value in (("producer_seq", "999"), ("producer_id", "'forged'")):
        edited = tmp_path / f"{column}.db"
        edited.write_bytes(db.read_bytes())
        tamper(edited, f"UPDATE ledger SET {column} = {value} WHERE seq = 2")
        report = _verify(edited)
        assert not report.ok, report
        assert report.first_bad_seq == 2
        assert f"its {column} column does not match the hashed entry" in (report.problem or "")


def test_null_producer_columns_of_a_row_keeping_its_entry_bytes_verify(tmp_path: Path) -> None:
    """Rows stored before the producer columns existed have them NULL: that is not an edit."""
    db = tmp_path / "ledger.db"
    _ledger(db, simple_run())
    _with_entry_bytes(db)
    tamper(db, "UPDATE ledger SET producer_id = NULL, producer_seq = NULL")
    assert _verify(db).ok


def test_missing_tree_nodes_are_named_by_level_index_and_entries(tmp_path: Path) -> None:
    """Every stored Merkle node deleted: verify names the first missing one's level, index and entry range."""
    db = tmp_path / "ledger.db"
    _ledger(db, *(simple_run() for _ in range(70)))  # 280 entries: one stored node of 256
    tamper(db, "DELETE FROM merkle_nodes")
    report = _verify(db)
    assert not report.ok, report
    assert report.first_bad_seq == 1
    assert "missing, the first at level 8, index 0 (entries 1..256)" in (report.problem or "")
