"""A fault of the store is a 500 with its traceback logged, not a 503 telling the client to retry later.

Only :class:`~flowledger._exceptions.StoreUnavailable` (the database down, restarting or locked) is answered 503
with ``Retry-After``: a schema that lost a column will not answer however long the client waits.
"""

from __future__ import annotations

import sqlite3

from tests.receiver._support import LiveReceiver, RunEvents


def test_a_fault_of_the_store_is_a_500_without_retry_after(live: LiveReceiver) -> None:
    run = RunEvents(workflow_id="big").start().node("fetch").finish("succeeded")
    assert live.post(run.events).status_code == 200
    assert live.get("/api/viewer/runs").status_code == 200
    db = sqlite3.connect(live.db_path)
    try:
        db.execute("ALTER TABLE runs RENAME COLUMN workflow_name TO renamed")
    finally:
        db.close()
    answer = live.get("/api/viewer/runs")
    assert answer.status_code == 500
    assert "retry-after" not in answer.headers
