"""A write transaction run on the SQLite connection's own thread, in one hand-off."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from flowledger.receiver.store._on_thread import ThreadConnection, run_on_thread
from flowledger.receiver.store._protocol import EventOutcome
from flowledger.receiver.store._sqlite import SqliteStore
from tests.receiver._support import simple_run, typical_run
from tests.receiver.store.conformance.conftest import prepared


@contextmanager
def _hand_offs(conn: aiosqlite.Connection) -> Iterator[list[str]]:
    """The names of the functions handed to ``conn``'s thread while inside."""
    handed: list[str] = []
    execute = conn._execute

    async def counted(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        handed.append(getattr(fn, "__name__", repr(fn)))
        return await execute(fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    conn._execute = counted  # type: ignore[method-assign]
    try:
        yield handed
    finally:
        del conn._execute  # the class's method again


@pytest.mark.asyncio
async def test_the_work_runs_on_the_connections_thread_to_its_end_in_one_hand_off(tmp_path: Path) -> None:
    """Statements, many-row statements and reads all run on the connection's thread, in one hand-off."""
    threads: set[int] = set()

    async def work(conn: ThreadConnection) -> list[Any]:
        threads.add(threading.get_ident())
        await conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, s TEXT)")
        await conn.executemany("INSERT INTO t VALUES (?, ?)", [(1, "one"), (2, "two")])
        await conn.execute("INSERT INTO t VALUES (?, ?)", (3, "three"))
        threads.add(threading.get_ident())
        return list(await conn.execute_fetchall("SELECT k, s FROM t WHERE k > ? ORDER BY k", (1,)))

    async with aiosqlite.connect(tmp_path / "t.db") as conn:
        with _hand_offs(conn) as handed:
            rows = await run_on_thread(conn, work)
        assert [tuple(row) for row in rows] == [(2, "two"), (3, "three")]
        assert handed == ["_to_end"]
        worker: Any = getattr(conn, "_thread", conn)  # aiosqlite before 0.22: the connection is its own thread
        assert threads == {worker.ident} != {threading.get_ident()}
        (count,) = next(iter(await conn.execute_fetchall("SELECT count(*) FROM t")))
    assert count == 3


@pytest.mark.asyncio
async def test_an_error_of_the_work_reaches_the_caller_and_the_connection_serves_on(tmp_path: Path) -> None:
    """The statement's own exception is raised to the caller as it is; the connection keeps working."""

    async def work(conn: ThreadConnection) -> None:
        await conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
        await conn.execute("INSERT INTO t VALUES (1)")
        await conn.execute("INSERT INTO t VALUES (1)")

    async with aiosqlite.connect(tmp_path / "t.db") as conn:
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            await run_on_thread(conn, work)
        assert list(await conn.execute_fetchall("SELECT k FROM t")) == [(1,)]


@pytest.mark.asyncio
async def test_work_that_waits_on_anything_but_its_statements_is_refused(tmp_path: Path) -> None:
    """A coroutine that suspends cannot run to its end in one call: refused with what it did, nothing left open."""
    finished = False

    async def work(conn: ThreadConnection) -> None:
        nonlocal finished
        await conn.execute("SELECT 1")
        await asyncio.sleep(0)
        finished = True

    async with aiosqlite.connect(tmp_path / "t.db") as conn:
        with pytest.raises(RuntimeError, match="awaited something other than its statements"):
            await run_on_thread(conn, work)
        assert list(await conn.execute_fetchall("SELECT 2")) == [(2,)]
    assert not finished


@pytest.mark.asyncio
async def test_a_commit_group_is_one_hand_off_to_the_writers_thread(tmp_path: Path) -> None:
    """Appending a batch (reads of what is stored, the fold, every table's rows, the commit) is one hand-off;
    it was about 30, one per statement, each waiting for the event loop to come back to the writer."""
    store = SqliteStore(tmp_path / "ledger.db")
    await store.open()
    try:
        events = prepared([e for run in (typical_run(), simple_run(), simple_run()) for e in run.events])
        assert store._writer is not None
        with _hand_offs(store._writer) as handed:
            outcomes = await store.append(events)
        assert handed == ["_to_end"]
        assert outcomes == [(EventOutcome.ACCEPTED, None)] * len(events)
        assert store.head[0] == len(events)
        assert (await store.verify()).ok
        assert (await store.append(events[:2])) == [(EventOutcome.DUPLICATE, None)] * 2
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_an_append_cancelled_before_its_commit_is_rolled_back(tmp_path: Path) -> None:
    """The thread cannot be stopped, but an append whose caller was cancelled does not commit: all or nothing."""
    store = SqliteStore(tmp_path / "ledger.db")
    await store.open()
    try:
        conn = store._writer
        assert conn is not None
        release = threading.Event()
        blocker = asyncio.ensure_future(conn._execute(release.wait))  # type: ignore[no-untyped-call]
        events = prepared([e for run in (typical_run(), simple_run()) for e in run.events])
        append = asyncio.ensure_future(store.append(events))
        for _ in range(3):  # the append queues its work behind the blocker on the writer's thread
            await asyncio.sleep(0)
        append.cancel()
        with pytest.raises(asyncio.CancelledError):
            await append
        release.set()
        await blocker
        await conn._execute(lambda: None)  # type: ignore[no-untyped-call]  # the cancelled work has run by now
        assert await store.ledger_size() == 0
        assert await store.append(events) == [(EventOutcome.ACCEPTED, None)] * len(events)
        assert store.head[0] == len(events)
        assert (await store.verify()).ok
    finally:
        await store.close()
