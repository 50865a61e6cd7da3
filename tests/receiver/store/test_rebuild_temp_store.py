"""A rebuild keeps its copies of the projections in a temporary file, not in memory, and ingest's temporary
storage stays in memory (a real SQLite file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from flowledger.receiver.store import _rebuild, _sqlite
from flowledger.receiver.store._protocol import EventOutcome, PurgeSelection
from flowledger.receiver.store._sqlite import SqliteStore
from tests.receiver._support import simple_run, typical_run
from tests.receiver.store.conformance.conftest import prepared

pytestmark = pytest.mark.asyncio

_FILE, _MEMORY = 1, 2
"""``PRAGMA temp_store`` values."""


async def _temp_store(conn: aiosqlite.Connection) -> int:
    (row,) = await conn.execute_fetchall("PRAGMA temp_store")
    return int(row[0])


async def test_a_rebuilds_temp_tables_are_on_disk_and_ingest_keeps_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While refold copies the projections (TEMP tables as large as they are) the writer's temp_store is FILE;
    before and after, MEMORY; a purge (TEMP tables of its own) and ingest work after the switch back."""
    seen: list[int] = []
    refold = _rebuild.refold

    async def watched(conn: aiosqlite.Connection) -> Any:
        seen.append(await _temp_store(conn))  # old_runs and the others hold every projection row now
        return await refold(conn)

    monkeypatch.setattr(_sqlite, "refold", watched)
    store = SqliteStore(tmp_path / "ledger.db")
    await store.open()
    try:
        runs = [typical_run(), *(simple_run() for _ in range(50))]
        outcomes = await store.append(prepared([e for run in runs for e in run.events]))
        assert {outcome for outcome, _ in outcomes} == {EventOutcome.ACCEPTED}
        writer = store._write_conn()
        assert await _temp_store(writer) == _MEMORY
        drift = await store.rebuild()
        assert drift.events == sum(len(run.events) for run in runs)
        assert seen == [_FILE]
        assert await _temp_store(writer) == _MEMORY
        later = simple_run()
        outcomes = await store.append(prepared(later.events))
        assert {outcome for outcome, _ in outcomes} == {EventOutcome.ACCEPTED}
        purged = await store.purge(PurgeSelection(run_ids=(later.run_id,), by="test"))
        assert purged.runs == [later.run_id]
        assert (await store.rebuild()).clean
        assert seen == [_FILE, _FILE]
        assert await _temp_store(writer) == _MEMORY
    finally:
        await store.close()
