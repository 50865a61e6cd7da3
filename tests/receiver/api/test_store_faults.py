"""A fault of the store is a 500 with its traceback logged, not a 503 telling the client to retry later.

Only :class:`~flowledger._exceptions.StoreUnavailable` (the database down, restarting or locked) is answered 503
with ``Retry-After``: a schema that lost a column will not answer however long the client waits.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx

from tests.faults._world import ReceiverProc, verify
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


def _fill(receiver: ReceiverProc) -> None:
    """Post runs with large inputs until the receiver's files cannot grow and ingest answers 503."""
    for _ in range(200):
        run = RunEvents(workflow_id="filler").start(trigger_data={"blob": "x" * 20_000}).finish("succeeded")
        answer = httpx.post(f"{receiver.url}/v1/events", json={"events": run.events}, timeout=30)
        if answer.status_code == 503:
            return
        assert answer.status_code == 200, answer.text
    raise AssertionError("the receiver's files never filled")


def test_writes_on_a_full_disk_are_503_with_retry_after(tmp_path: Path) -> None:
    """Purges and a rebuild on a disk that is full answer 503 with Retry-After, as ingest does, and change nothing."""
    db = tmp_path / "ledger.db"
    first = ReceiverProc(db).start()
    try:
        run = RunEvents(workflow_id="keep").start().node("fetch").finish("succeeded")
        assert httpx.post(f"{first.url}/v1/events", json={"events": run.events}, timeout=30).status_code == 200
    finally:
        first.stop()
    largest = max(p.stat().st_size for p in tmp_path.glob("ledger.db*"))
    full = ReceiverProc(db, file_size_limit=largest + 64 * 1024).start()
    try:
        _fill(full)
        answers = [
            httpx.delete(f"{full.url}/api/runs/{run.run_id}", timeout=30),
            httpx.post(f"{full.url}/api/purge", json={"workflow_id": "keep"}, timeout=30),
            httpx.post(f"{full.url}/api/rebuild", timeout=60),
        ]
        assert [a.status_code for a in answers] == [503, 503, 503], [a.text for a in answers]
        assert all(a.headers.get("retry-after") for a in answers)
        assert "purging runs failed" in answers[0].json()["error"]
        assert "Traceback" not in full.stderr()
    finally:
        full.stop()
    assert verify(db)
    check = sqlite3.connect(db)
    try:
        assert check.execute("SELECT count(*) FROM runs WHERE run_id = ?", (run.run_id,)).fetchone()[0] == 1
    finally:
        check.close()
