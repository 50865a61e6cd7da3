"""A time limit for one read on SQLite: the progress handler stops a query past it, the reader serves again, and
the reads whose length is the ledger's own (exports, verify) are never cut."""

from __future__ import annotations

import contextlib
import math
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from flowledger._exceptions import QueryTimeout
from flowledger.receiver.store._deadline import PROGRESS_STEPS, Deadline, interrupted, query_timeout
from flowledger.receiver.store._error_groups import ErrorGroupQuery
from flowledger.receiver.store._protocol import RunQuery
from flowledger.receiver.store._sqlite import SqliteStore
from flowledger.receiver.store._stats import StatsQuery
from flowledger.receiver.store._views import RunFilter
from tests.receiver._support import RunEvents
from tests.receiver.store.conformance.conftest import prepared

RUNS = 1000
_EVER = RunFilter(since="2000-01-01T00:00:00.000000Z")
"""A time range: the summary scans the runs (without one, it reads kept counts)."""
"""Enough runs that listing, counting and grouping them take far more than :data:`PROGRESS_STEPS` steps."""


def test_a_deadline_stops_a_statement_once_passed_and_not_before() -> None:
    conn = sqlite3.connect(":memory:")
    deadline = Deadline()
    conn.set_progress_handler(deadline, PROGRESS_STEPS)
    heavy = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000) SELECT count(*) FROM n"
    assert conn.execute(heavy).fetchone() == (200000,)  # no limit: runs to the end
    deadline.start(3600)
    assert conn.execute(heavy).fetchone() == (200000,)
    deadline.at = time.monotonic() - 1  # passed
    with pytest.raises(sqlite3.OperationalError) as caught:
        conn.execute(heavy).fetchone()
    assert interrupted(caught.value)
    deadline.clear()
    assert deadline.at == math.inf
    assert conn.execute(heavy).fetchone() == (200000,)
    assert not interrupted(sqlite3.OperationalError("database is locked"))


def test_the_error_names_the_limit_and_what_to_do() -> None:
    message = str(query_timeout(0.25))
    assert "0.25 s" in message
    assert "narrow it" in message


async def _filled(path: Path, *, read_timeout_s: float | None) -> SqliteStore:
    store = SqliteStore(path, readers=1, read_timeout_s=read_timeout_s)
    await store.open()
    events = []
    for index in range(RUNS):  # every other run fails at a node of its own, so that it has an error group
        failing = index % 2 == 1
        run = RunEvents().start().node("a").node(f"b{index}", status="failed" if failing else "succeeded")
        events += run.finish("failed" if failing else "succeeded", error_node=f"b{index}" if failing else None).events
    await store.append(prepared(events))
    return store


@pytest.mark.asyncio
async def test_every_timed_read_stops_at_the_limit_and_the_reader_serves_again(tmp_path: Path) -> None:
    """With a limit nothing can meet (a nanosecond), each query of the query API, the analytics and the viewer is
    stopped with QueryTimeout; the same single reader then exports and verifies the whole ledger, so the limit
    went with the query."""
    store = await _filled(tmp_path / "timed.db", read_timeout_s=1e-9)
    try:
        timed: dict[str, Callable[[], Awaitable[object]]] = {
            "list_runs": lambda: store.list_runs(RunQuery(limit=1000)),
            "error_groups": lambda: store.error_groups(ErrorGroupQuery()),
            "run_summary": lambda: store.run_summary(_EVER),
        }
        for name, read in timed.items():
            with _named(name), pytest.raises(QueryTimeout, match="1e-09 s"):
                await read()
            exported = [run async for run in store.iter_runs(RunQuery(), with_nodes=True)]
            assert len(exported) == RUNS, name
        report = await store.verify()
        assert report.ok
        assert report.events == RUNS * 6
    finally:
        await store.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("limit", [None, 0.0, 3600.0])
async def test_without_a_limit_or_with_one_not_reached_every_read_answers(tmp_path: Path, limit: float | None) -> None:
    store = await _filled(tmp_path / "free.db", read_timeout_s=limit)
    try:
        assert (await store.list_runs(RunQuery(limit=1000))).total == RUNS
        assert sum(group["runs"] for group in await store.run_stats(StatsQuery())) == RUNS
        assert (await store.error_groups(ErrorGroupQuery()))[0]["count"] == 1
        assert (await store.run_summary(_EVER))["total"] == RUNS
    finally:
        await store.close()


@contextlib.contextmanager
def _named(name: str) -> Iterator[None]:
    try:
        yield
    except BaseException as exc:
        exc.add_note(f"the read: {name}")
        raise
