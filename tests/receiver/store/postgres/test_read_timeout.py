"""A time limit for one read on PostgreSQL: ``statement_timeout`` for the query, QueryTimeout when it passes, and
no limit left on the pooled connection for what reads next."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from flowledger._exceptions import QueryTimeout
from flowledger.receiver.store._protocol import RunQuery
from flowledger.receiver.store._views import RunFilter
from flowledger.receiver.store.postgres import PostgresStore
from tests.receiver._support import typical_run
from tests.receiver.store.conformance.conftest import prepared

pytestmark = pytest.mark.asyncio

LIMIT_S = 0.5


async def test_a_read_held_past_its_limit_is_stopped_and_the_connection_reads_on_without_one(
    postgres_url: str,
) -> None:
    """Another session holds the runs table locked, so a listing and the viewer's summary wait: each is cancelled
    at the limit with QueryTimeout. The pool's one connection then has no limit for the reads that have none (an
    export waits for the lock as long as it is held), and lists again once the lock is gone."""
    store = PostgresStore(postgres_url, pool_min=1, pool_max=1, read_timeout_s=LIMIT_S)
    await store.open()
    blocker = await asyncpg.connect(postgres_url)
    try:
        run = typical_run()
        await store.append(prepared(run.events))
        locked = blocker.transaction()
        await locked.start()
        await blocker.execute("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")
        for read in (lambda: store.list_runs(RunQuery()), lambda: store.run_summary(RunFilter())):
            started = time.monotonic()
            with pytest.raises(QueryTimeout, match=r"0\.5 s"):
                await read()
            assert time.monotonic() - started >= LIMIT_S
        async with store._reader() as conn:  # the connection the timed reads used: its limit went with them
            assert await conn.fetchval("SHOW statement_timeout") == "0"
        await locked.rollback()
        assert [r["run_id"] for r in (await store.list_runs(RunQuery())).runs] == [run.run_id]
        assert [r["run_id"] async for r in store.iter_runs(RunQuery(), with_nodes=True)] == [run.run_id]
    finally:
        await blocker.close()
        await store.close()


async def test_a_read_cancelled_by_another_session_is_not_taken_for_the_limit(postgres_url: str) -> None:
    """pg_cancel_backend on the reading session is an error of its own, not a QueryTimeout."""
    store = PostgresStore(postgres_url, pool_min=1, pool_max=1, read_timeout_s=60)
    await store.open()
    blocker = await asyncpg.connect(postgres_url)
    try:
        await store.append(prepared(typical_run().events))
        locked = blocker.transaction()
        await locked.start()
        await blocker.execute("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")
        listing = asyncio.ensure_future(store.list_runs(RunQuery()))
        for _ in range(200):
            waiting = await blocker.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            if waiting is not None:
                break
            await asyncio.sleep(0.05)
        assert waiting is not None
        await blocker.execute("SELECT pg_cancel_backend($1)", waiting)
        with pytest.raises(asyncpg.QueryCanceledError, match="user request"):
            await listing
        await locked.rollback()
    finally:
        await blocker.close()
        await store.close()
