"""``flowledger migrate`` of an error holding a NUL: the run still leads to its error group on PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

from click.testing import CliRunner

from flowledger.receiver.cli._migrate import migrate_command
from flowledger.receiver.store._error_groups import ErrorGroupQuery
from flowledger.receiver.store._protocol import Store
from flowledger.receiver.store._sqlite import SqliteStore
from flowledger.receiver.store.postgres import PostgresStore
from tests.receiver._support import RunEvents
from tests.receiver.store.conformance.conftest import prepared


async def _fingerprints(store: Store, run_id: str) -> tuple[str, list[tuple[str, int]]]:
    """The run's error fingerprint, and every group's fingerprint and count."""
    await store.open()
    try:
        run = await store.get_run(run_id)
        assert run is not None
        groups = await store.error_groups(ErrorGroupQuery())
        return run["error"]["fingerprint"], [(g["fingerprint"], g["count"]) for g in groups]
    finally:
        await store.close()


def test_a_nul_in_an_error_keeps_its_group_through_a_migration(tmp_path: Path, postgres_url: str) -> None:
    """An error message "bad\\u0000nul" has one fingerprint on SQLite and, after migrate, on PostgreSQL: the run's
    error names the group counting it on both."""
    run = RunEvents(workflow_id="ship").start().node("price", status="failed").finish("failed", error_node="price")
    for event in run.events:
        if event["kind"] in ("node_finished", "run_finished"):
            event["data"]["error"]["message"] = "bad\u0000nul"
    source = tmp_path / "f.db"

    async def fill() -> None:
        store = SqliteStore(source)
        await store.open()
        try:
            await store.append(prepared(run.events))
        finally:
            await store.close()

    asyncio.run(fill())
    on_sqlite = asyncio.run(_fingerprints(SqliteStore(source, readonly=True), run.run_id))
    assert on_sqlite[1] == [(on_sqlite[0], 1)]
    result = CliRunner().invoke(migrate_command, ["--from", f"sqlite:{source}", "--to", postgres_url])
    assert result.exit_code == 0, result.output
    assert asyncio.run(_fingerprints(PostgresStore(postgres_url, readonly=True), run.run_id)) == on_sqlite
