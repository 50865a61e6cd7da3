"""The run context (user, agent, intent, parent run) folded into columns of the runs projection."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from flowledger._wire import new_event_id
from flowledger.receiver.store._fold import RUN_CONTEXT_FIELDS, fold_run
from flowledger.receiver.store._migrations import MIGRATIONS, _v18_run_context
from flowledger.receiver.store._protocol import RunQuery
from flowledger.receiver.store._sqlite import SqliteStore
from tests.receiver._support import simple_run
from tests.receiver.store._rewrite import run_counts_as_before, store_entry_bytes
from tests.receiver.store.conformance.conftest import prepared

_CONTEXT = {"user_id": "u-17", "agent_id": "billing-agent", "intent": "refund", "parent_run_id": new_event_id()}


def test_the_winning_run_started_decides_the_context() -> None:
    """The run keeps the context of the run_started with the larger event id, in either order."""
    run = simple_run()
    run.start(user_id="second", agent_id="a2")  # a replayed start of the same run, later id
    first, second = prepared([run.events[0], run.events[-1]])
    for order in ([first, second], [second, first]):
        state = None
        for event in order:
            state = fold_run(state, event)
        assert state is not None
        assert (state.user_id, state.agent_id, state.intent) == ("second", "a2", None)


def test_a_run_without_context_keeps_null_columns() -> None:
    """A run_started of an older SDK, without the fields, leaves them null."""
    state = fold_run(None, prepared(simple_run().events)[0])
    assert all(getattr(state, name) is None for name in RUN_CONTEXT_FIELDS)


async def _ingest_and_list(path: Path, events: list[dict[str, object]]) -> dict[str, object]:
    store = SqliteStore(path)
    await store.open()
    try:
        await store.append(prepared(events))
        page = await store.list_runs(RunQuery())
        return page.runs[0]
    finally:
        await store.close()


def test_the_store_answers_the_context_of_a_run(tmp_path: Path) -> None:
    """A run sent with a context is listed with it, and with its project."""
    run = simple_run(project="shop")
    run.events[0]["data"].update(_CONTEXT)
    listed = asyncio.run(_ingest_and_list(tmp_path / "c.db", run.events))
    assert {name: listed[name] for name in _CONTEXT} == _CONTEXT
    assert listed["project"] == "shop"


def test_the_migration_fills_the_columns_from_the_ledger(tmp_path: Path) -> None:
    """A database made before the columns gets them, filled from the run_started each run shows."""
    path = tmp_path / "old.db"
    run = simple_run()
    run.events[0]["data"].update(_CONTEXT)
    asyncio.run(_ingest_and_list(path, run.events))
    version = MIGRATIONS.index(_v18_run_context)
    with sqlite3.connect(path, isolation_level=None) as conn:  # back to the schema before the migration
        for (index,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name IN "
            "('runs_by_user', 'runs_by_agent', 'runs_by_intent', 'runs_by_parent')"
        ).fetchall():
            conn.execute(f"DROP INDEX {index}")
        for column in RUN_CONTEXT_FIELDS:
            conn.execute(f"ALTER TABLE runs DROP COLUMN {column}")
        conn.execute("DROP TABLE IF EXISTS error_groups")  # later migrations, made again on the way up
        conn.execute("DROP TABLE IF EXISTS stats_rollup")
        conn.execute("DROP TABLE IF EXISTS stats_hist")
        conn.execute("DROP TABLE IF EXISTS custom_metrics")
        conn.execute("ALTER TABLE runs DROP COLUMN cost_breakdown")
        conn.execute("ALTER TABLE node_runs DROP COLUMN cost_breakdown")
        store_entry_bytes(conn)
        run_counts_as_before(conn)
        conn.execute(f"PRAGMA user_version = {version}")
    listed = asyncio.run(_ingest_and_list(path, []))
    assert {name: listed[name] for name in _CONTEXT} == _CONTEXT
    with sqlite3.connect(path) as conn:
        plan = " ".join(
            row[3] for row in conn.execute("EXPLAIN QUERY PLAN SELECT run_id FROM runs WHERE user_id = 'u-17'")
        )
    assert "runs_by_user" in plan
