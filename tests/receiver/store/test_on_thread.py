"""A write transaction run on the SQLite connection's own thread, in one hand-off."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from flowledger.receiver.store._on_thread import (
    OVERLAP_MAX_SWITCH_INTERVAL_S,
    StatementThread,
    ThreadConnection,
    run_on_thread,
)
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


@contextmanager
def _statement_thread(conn: aiosqlite.Connection) -> Iterator[StatementThread]:
    statements = StatementThread(conn)
    try:
        yield statements
    finally:
        statements.close()


async def _connect(path: Path) -> aiosqlite.Connection:
    return await aiosqlite.connect(path, isolation_level=None, check_same_thread=False)


@asynccontextmanager
async def _key_one_taken(tmp_path: Path) -> AsyncIterator[tuple[aiosqlite.Connection, StatementThread]]:
    """A connection to a table ``t`` whose key 1 is taken, and a statement thread on it."""
    conn = await _connect(tmp_path / "t.db")
    try:
        await conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
        await conn.execute("INSERT INTO t VALUES (1)")
        with _statement_thread(conn) as statements:
            yield conn, statements
    finally:
        await conn.close()


@pytest.mark.asyncio
async def test_with_a_statement_thread_writes_run_there_in_order_and_reads_wait_for_them(tmp_path: Path) -> None:
    """Queued writes run on the statement thread, in order; a read, and the commit, see every write before it."""
    ran_on: set[str] = set()

    def where(_: int) -> int:
        ran_on.add(threading.current_thread().name)
        return 0

    async def work(conn: ThreadConnection) -> list[Any]:
        await conn.execute("BEGIN IMMEDIATE")
        assert await conn.execute("INSERT INTO t VALUES (?, ?)", (1, "one")) is None  # queued: no cursor
        await conn.executemany("INSERT INTO t VALUES (?, where_(?))", ((k, k) for k in range(2, 400)))
        await conn.execute("UPDATE t SET s = 'first' WHERE k = 1")
        seen = list(await conn.execute_fetchall("SELECT count(*), min(s) FROM t"))
        await conn.execute("DELETE FROM t WHERE k >= 200")
        await conn.execute("COMMIT")
        return seen

    conn = await _connect(tmp_path / "t.db")
    try:
        await conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, s)")
        await conn.create_function("where_", 1, where)
        with _statement_thread(conn) as statements:
            seen = await run_on_thread(conn, work, statements=statements)
        assert [tuple(row) for row in seen] == [(399, 0)]  # min(s): the numbers sort before the text
        assert ran_on == {"flowledger-sqlite-statements"}
        assert list(await conn.execute_fetchall("SELECT count(*), max(k) FROM t")) == [(199, 199)]
        assert list(await conn.execute_fetchall("SELECT s FROM t WHERE k = 1")) == [("first",)]
    finally:
        await conn.close()


@pytest.mark.asyncio
async def test_a_failed_queued_statement_is_raised_at_the_next_wait_and_the_rest_is_not_run(tmp_path: Path) -> None:
    """The failing statement's own exception reaches the caller at its next read, before any commit; the
    statements queued behind it never run; after the rollback the thread and the connection serve on."""
    reached: list[str] = []

    async def work(conn: ThreadConnection) -> None:
        await conn.execute("BEGIN IMMEDIATE")
        await conn.execute("INSERT INTO t VALUES (2)")
        await conn.execute("INSERT INTO t VALUES (1)")  # a duplicate key: fails on the statement thread
        await conn.execute("INSERT INTO t VALUES (3)")  # skipped
        reached.append("after the failing statement")  # the caller goes on until it waits
        try:
            await conn.execute_fetchall("SELECT count(*) FROM t")
            reached.append("after the read")
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise

    async with _key_one_taken(tmp_path) as (conn, statements):
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            await run_on_thread(conn, work, statements=statements)
        assert reached == ["after the failing statement"]
        assert list(await conn.execute_fetchall("SELECT k FROM t")) == [(1,)]

        async def more(c: ThreadConnection) -> None:
            await c.execute("INSERT INTO t VALUES (5)")

        await run_on_thread(conn, more, statements=statements)
        assert list(await conn.execute_fetchall("SELECT k FROM t ORDER BY k")) == [(1,), (5,)]


@pytest.mark.asyncio
async def test_a_statement_queued_after_the_last_wait_still_fails_the_work(tmp_path: Path) -> None:
    """Work that returns with statements still queued is done only when they are, and fails if one does."""

    async def work(conn: ThreadConnection) -> str:
        await conn.execute("INSERT INTO t VALUES (1)")
        return "returned"

    conn = await _connect(tmp_path / "t.db")
    try:
        await conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
        with _statement_thread(conn) as statements:
            assert await run_on_thread(conn, work, statements=statements) == "returned"
            with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
                await run_on_thread(conn, work, statements=statements)
        assert list(await conn.execute_fetchall("SELECT k FROM t")) == [(1,)]
    finally:
        await conn.close()


@pytest.mark.asyncio
async def test_an_error_in_the_works_own_code_waits_for_its_queued_statements(tmp_path: Path) -> None:
    """When the work's Python fails with statements queued, they have run (or been dropped) before the error
    reaches the caller: nothing else uses the connection while the statement thread still does."""
    release = threading.Event()

    def slow(k: int) -> int:
        release.wait(5)
        return k

    async def work(conn: ThreadConnection) -> None:
        await conn.execute("INSERT INTO t VALUES (slow(?))", (7,))
        release.set()
        raise ValueError("the fold failed")

    conn = await _connect(tmp_path / "t.db")
    try:
        await conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
        await conn.create_function("slow", 1, slow)
        with _statement_thread(conn) as statements:
            with pytest.raises(ValueError, match="the fold failed"):
                await run_on_thread(conn, work, statements=statements)
            assert statements._queued == 0
        assert list(await conn.execute_fetchall("SELECT k FROM t")) == [(7,)]  # autocommit: it ran
    finally:
        await conn.close()


@pytest.mark.asyncio
async def test_an_event_the_store_cannot_keep_fails_its_queued_statement_and_the_rest_of_the_batch_is_stored(
    tmp_path: Path,
) -> None:
    """Through the store: an integer SQLite cannot hold fails a queued row of the ledger; the writer's fallback
    (commit the events one by one) stores every other event, and the ledger verifies."""
    store = SqliteStore(tmp_path / "ledger.db")
    await store.open()
    try:
        events = prepared([e for run in (simple_run(), simple_run()) for e in run.events])
        events[1].producer_seq = 2**70  # bound on the statement thread: OverflowError there, raised at the commit
        with pytest.raises(Exception, match="storing"):
            await store.append(events)
        assert await store.ledger_size() == 0
        assert store._statements is not None
        assert store._statements._queued == 0
        good = events[:1] + events[2:]
        assert await store.append(good) == [(EventOutcome.ACCEPTED, None)] * len(good)
        assert (await store.verify()).ok
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_a_failed_statement_is_what_the_caller_gets_when_the_works_own_code_fails_after_it(
    tmp_path: Path,
) -> None:
    """The statement failed first (here a unique key; a full disk in life): that error, not the work's later one,
    reaches the caller, with the work's as its context, and the transaction is rolled back."""

    async def work(conn: ThreadConnection) -> None:
        await conn.execute("BEGIN IMMEDIATE")
        try:
            await conn.execute("INSERT INTO t VALUES (2)")
            await conn.execute("INSERT INTO t VALUES (1)")  # fails on the statement thread
            raise ValueError("the fold failed after it")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise

    async with _key_one_taken(tmp_path) as (conn, statements):
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE") as raised:
            await run_on_thread(conn, work, statements=statements)
        assert isinstance(raised.value.__context__, ValueError)
        assert list(await conn.execute_fetchall("SELECT k FROM t")) == [(1,)]


@pytest.mark.asyncio
async def test_reads_and_statements_returning_rows_are_not_queued(tmp_path: Path) -> None:
    """Only plain writes go to the statement thread: a SELECT through ``execute``, an ``INSERT ... RETURNING``
    and a lowercase ``commit`` run at once, after the queue, and return their cursor."""

    async def work(conn: ThreadConnection) -> list[Any]:
        await conn.execute("begin immediate")
        await conn.execute("INSERT INTO t VALUES (1)")
        returned = await conn.execute("INSERT INTO t VALUES (2) RETURNING k")
        assert returned is not None
        rows = returned.fetchall()
        selected = await conn.execute("  select count(*) from t")
        assert selected is not None
        rows += selected.fetchall()
        await conn.execute("  commit")
        return rows

    conn = await _connect(tmp_path / "t.db")
    try:
        await conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
        with _statement_thread(conn) as statements:
            assert [tuple(r) for r in await run_on_thread(conn, work, statements=statements)] == [(2,), (2,)]
        assert not conn.in_transaction
    finally:
        await conn.close()


@pytest.mark.asyncio
async def test_closing_right_after_a_cancelled_append_waits_for_it_and_returns(tmp_path: Path) -> None:
    """A cancelled append still runs on the writer's thread (rolling back); closing the store then stops the
    statement thread only after it, instead of leaving that append waiting forever on a stopped thread."""
    store = SqliteStore(tmp_path / "ledger.db")
    await store.open()
    conn = store._writer
    assert conn is not None
    assert store._statements is not None
    statement_thread = store._statements._thread
    release = threading.Event()
    blocker = asyncio.ensure_future(conn._execute(release.wait))  # type: ignore[no-untyped-call]
    events = prepared([e for run in (typical_run(), simple_run()) for e in run.events])
    append = asyncio.ensure_future(store.append(events))
    for _ in range(3):
        await asyncio.sleep(0)
    append.cancel()
    with pytest.raises(asyncio.CancelledError):
        await append
    closing = asyncio.ensure_future(store.close())
    await asyncio.sleep(0.05)
    release.set()
    await blocker
    await asyncio.wait_for(closing, 30)
    assert not statement_thread.is_alive()
    reopened = SqliteStore(tmp_path / "ledger.db")
    await reopened.open()
    try:
        assert await reopened.ledger_size() == 0
    finally:
        await reopened.close()


@pytest.mark.asyncio
async def test_the_store_hands_statements_to_its_thread_only_at_a_short_switch_interval(tmp_path: Path) -> None:
    """At Python's 5 ms the writer runs its statements itself (the statement thread would wait that long for the
    lock after each one); at 1 ms or less they go to the statement thread. Either way the ledger is the same."""
    store = SqliteStore(tmp_path / "ledger.db")
    await store.open()
    before = sys.getswitchinterval()
    try:
        statements = store._statements
        assert statements is not None
        first = prepared([e for run in (typical_run(), simple_run()) for e in run.events])
        second = prepared(simple_run().events)
        sys.setswitchinterval(0.005)
        assert await store.append(first) == [(EventOutcome.ACCEPTED, None)] * len(first)
        assert statements.ran == 0
        sys.setswitchinterval(OVERLAP_MAX_SWITCH_INTERVAL_S)
        assert await store.append(second) == [(EventOutcome.ACCEPTED, None)] * len(second)
        assert statements.ran > 2  # at least the ledger's, the payloads' and the runs' rows
        assert store.head[0] == len(first) + len(second)
        assert (await store.verify()).ok
    finally:
        sys.setswitchinterval(before)
        await store.close()
