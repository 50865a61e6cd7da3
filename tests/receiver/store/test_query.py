"""The run listings' keyset pages are ranges of one listing index, in its order: no sort of the rows they read.

The order is newest first, then run id, then project; each listing index ends with those columns, so a page
after a cursor (even one tied with other projects' runs of its id and start time) reads its rows in index order.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowledger._wire import RunStatus
from flowledger.receiver.store._migrations import migrate
from flowledger.receiver.store._protocol import RunQuery
from flowledger.receiver.store._query import run_page_sql
from flowledger.receiver.store._run_filter import RunContextFilter
from flowledger.receiver.store._views import RunPageCursor

_CURSOR = RunPageCursor("2026-01-31T08:00:00.000000Z", "0190ab00-0000-7000-8000-000000000000", "alpha")


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """An empty database at the current schema."""
    connection = sqlite3.connect(tmp_path / "plan.db", isolation_level=None)
    migrate(connection)
    yield connection
    connection.close()


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (RunQuery(cursor=_CURSOR), "runs_by_start"),
        (RunQuery(cursor=_CURSOR, workflow_id="w"), "runs_by_workflow"),
        (RunQuery(cursor=_CURSOR, statuses=(RunStatus.FAILED, RunStatus.ABORTED)), "runs_by_status"),
        (RunQuery(cursor=_CURSOR, workflow_id="w", statuses=(RunStatus.FAILED,)), "runs_by_workflow_status"),
        (RunQuery(cursor=_CURSOR, context=RunContextFilter(user_id="u")), "runs_by_user"),
        (RunQuery(cursor=_CURSOR, context=RunContextFilter(project="alpha")), "runs_by_project"),
    ],
    ids=["all", "workflow", "statuses", "workflow-status", "user", "project"],
)
def test_a_page_after_a_cursor_is_a_range_of_its_index_read_in_order(
    conn: sqlite3.Connection, query: RunQuery, index: str
) -> None:
    """Each branch of a page after a cursor searches its listing index by (started_at, run_id) and sorts nothing
    but the merged branches' few rows (no temp B-tree for the right part of the order: the project is indexed)."""
    sql, params = run_page_sql(query, fetch=51)
    plan = [str(row[-1]) for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
    assert any(f"INDEX {index} (" in line and "(started_at,run_id)<" in line for line in plan), plan
    assert not any("RIGHT PART OF ORDER BY" in line for line in plan), plan
