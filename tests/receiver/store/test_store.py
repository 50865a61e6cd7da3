"""Store internals: migrations, public names, the writer's bounded queue, config from the environment."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx
import pytest

import flowledger.receiver
from flowledger._exceptions import ConfigError, SchemaVersionError, StoreError, WriteQueueFull
from flowledger.receiver._app import create_app
from flowledger.receiver._config import IngestLimits, ReceiverConfig, config_from_env
from flowledger.receiver._metrics import Metrics
from flowledger.receiver._validate import prepare_event
from flowledger.receiver._writer import Writer
from flowledger.receiver.store._event import PreparedEvent
from flowledger.receiver.store._migrations import SCHEMA_VERSION, migrate
from flowledger.receiver.store._sqlite import SWEEP_SQL, SqliteStore
from tests.receiver._support import simple_run


def test_public_names() -> None:
    """The package exports exactly its curated names, each importable."""
    assert sorted(flowledger.receiver.__all__) == [
        "IngestLimits",
        "ReceiverConfig",
        "SqliteStore",
        "Store",
        "config_from_env",
        "create_app",
    ]
    for name in flowledger.receiver.__all__:
        assert getattr(flowledger.receiver, name) is not None
    with pytest.raises(AttributeError):
        _ = flowledger.receiver.nothing_here


def test_migrations_are_idempotent(tmp_path: Path) -> None:
    """Migrating twice applies each migration once and leaves the version at the newest."""
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    assert migrate(conn) == SCHEMA_VERSION
    assert migrate(conn) == 0
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_newer_schema_is_refused_with_one_clear_error(tmp_path: Path) -> None:
    """A database from a newer flowledger is refused before anything is touched."""
    path = tmp_path / "new.db"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaVersionError, match="upgrade flowledger"):
        asyncio.run(SqliteStore(path).open())
    with pytest.raises(SchemaVersionError, match="newer"):
        asyncio.run(SqliteStore(path, readonly=True).open())


def test_another_applications_database_is_refused(tmp_path: Path) -> None:
    """An SQLite file of another application is not migrated into."""
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 1234")
    conn.close()
    with pytest.raises(StoreError, match="another application"):
        asyncio.run(SqliteStore(path).open())


def test_wal_mode_is_on(tmp_path: Path) -> None:
    """The store runs in WAL mode so readers never wait for the writer."""

    async def main() -> None:
        store = SqliteStore(tmp_path / "w.db")
        await store.open()
        await store.close()

    asyncio.run(main())
    conn = sqlite3.connect(tmp_path / "w.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def _prepared() -> list[PreparedEvent]:
    out = []
    for i, raw in enumerate(simple_run().events):
        event = prepare_event(raw, i, IngestLimits(), None)
        assert isinstance(event, PreparedEvent)
        out.append(event)
    return out


def test_full_write_queue_refuses_instead_of_growing(tmp_path: Path) -> None:
    """With the writer busy and its queue full, submit raises WriteQueueFull at once."""

    async def main() -> None:
        store = SqliteStore(tmp_path / "q.db")
        await store.open()
        writer = Writer(store, Metrics(), max_requests=1, commit_max_events=100)
        writer.start()
        release = asyncio.Event()

        async def busy() -> None:
            await release.wait()

        blocker = asyncio.ensure_future(writer.call(busy))
        await asyncio.sleep(0.05)
        first = writer.submit(_prepared())
        with pytest.raises(WriteQueueFull):
            writer.submit(_prepared())
        release.set()
        await blocker
        assert [o.value for o, _ in await first] == ["accepted"] * 4
        await writer.stop()
        await store.close()

    asyncio.run(main())


def test_full_write_queue_is_503_with_retry_after(tmp_path: Path) -> None:
    """Over HTTP a full write queue is answered 503 with Retry-After."""

    async def main() -> None:
        app = create_app(ReceiverConfig(db_path=tmp_path / "h.db", write_queue_max_requests=1, sweep_interval_s=0))
        state = app.state.receiver
        async with app.router.lifespan_context(app):
            release = asyncio.Event()

            async def busy() -> None:
                await release.wait()

            blocker = asyncio.ensure_future(state.writer.call(busy))
            await asyncio.sleep(0.05)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
                first = asyncio.ensure_future(client.post("/v1/events", json={"events": simple_run().events}))
                await asyncio.sleep(0.05)
                second = await client.post("/v1/events", json={"events": simple_run().events})
                assert second.status_code == 503
                assert second.headers["retry-after"] == "1"
                release.set()
                await blocker
                assert (await first).json()["accepted"] == 4

    asyncio.run(main())


def test_config_from_env_reads_limits_and_settings() -> None:
    """FLOWLEDGER_RECEIVER_* variables set limits and settings; bad numbers are a ConfigError."""
    config = config_from_env(
        environ={"FLOWLEDGER_RECEIVER_MAX_BATCH_EVENTS": "7", "FLOWLEDGER_RECEIVER_STUCK_AFTER_S": "2.5"}
    )
    assert config.limits.max_batch_events == 7
    assert config.stuck_after_s == 2.5
    with pytest.raises(ConfigError, match="FLOWLEDGER_RECEIVER_MAX_DEPTH"):
        config_from_env(environ={"FLOWLEDGER_RECEIVER_MAX_DEPTH": "deep"})


def test_two_stores_on_one_file_keep_one_chain(tmp_path: Path) -> None:
    """Two writers appending to the same database (two receivers, or one and a CLI) extend one valid chain."""
    from flowledger.receiver.store._sqlite import _VERIFY_SQL, entry_rows
    from flowledger.receiver.store._verify import EntryWalker

    path = tmp_path / "shared.db"

    async def main() -> None:
        first, second = SqliteStore(path), SqliteStore(path)
        await first.open()
        await second.open()
        for _ in range(3):
            await first.append(_prepared())
            await second.append(_prepared())
        assert (await first.verify()).ok
        await first.close()
        await second.close()

    asyncio.run(main())
    conn = sqlite3.connect(path)
    rows = entry_rows(conn.execute(_VERIFY_SQL, (0, 1000)).fetchall())
    conn.close()
    walker = EntryWalker()
    assert walker.feed(rows)
    assert walker.count == 24
    assert walker.report().ok


def test_store_failure_is_503_with_retry_after(tmp_path: Path) -> None:
    """When the database fails under the writer, ingest answers 503 with Retry-After; the writer keeps serving."""
    from tests.receiver._support import start_receiver

    live = start_receiver(ReceiverConfig(db_path=tmp_path / "f.db", sweep_interval_s=0))
    try:
        assert live.post(simple_run().events).status_code == 200
        conn = sqlite3.connect(live.db_path)
        conn.execute("ALTER TABLE ledger RENAME TO ledger_gone")
        conn.commit()
        answer = live.post(simple_run().events)
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "1"
        assert "store" in answer.json()["error"]
        conn.execute("ALTER TABLE ledger_gone RENAME TO ledger")
        conn.commit()
        conn.close()
        assert live.post(simple_run().events).json()["accepted"] == 4
    finally:
        live.stop()


@pytest.mark.parametrize(
    ("sql", "index"),
    [
        (SWEEP_SQL.replace("?", "'2026'"), "runs_alive (last_seen_at<?)"),
        (
            "SELECT run_id FROM runs r WHERE r.workflow_id = 'w' ORDER BY r.started_at DESC, r.run_id DESC",
            "runs_by_workflow",
        ),
        (
            "SELECT run_id FROM runs r WHERE r.status = 'failed' ORDER BY r.started_at DESC, r.run_id DESC",
            "runs_by_status",
        ),
        ("SELECT event_id FROM ledger WHERE event_id IN ('a', 'b')", "ledger_event_once"),
    ],
    ids=["sweeper", "workflow-filter", "status-filter", "dedupe"],
)
def test_hot_queries_use_an_index(tmp_path: Path, sql: str, index: str) -> None:
    """The sweeper, the run filters and the duplicate check are index lookups, not table scans."""
    conn = sqlite3.connect(tmp_path / "plan.db", isolation_level=None)
    migrate(conn)
    plan = " ".join(str(row[-1]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql))
    conn.close()
    assert index in plan, plan
