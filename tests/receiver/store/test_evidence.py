"""Resume evidence on SQLite: an entry rewritten with its chain is caught by the Merkle tree alone."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

from flowledger.receiver.store._entry import ENTRY_COLUMNS, entry_hash, entry_of
from flowledger.receiver.store._protocol import EventOutcome
from flowledger.receiver.store._sqlite import SqliteStore
from tests.receiver._support import RunEvents, simple_run
from tests.receiver.store.conformance.conftest import prepared

pytestmark = pytest.mark.asyncio


def _run_with_full_output() -> RunEvents:
    run = RunEvents().start().node("fetch").finish()
    text = json.dumps({"order": "A-1"}, separators=(",", ":"))
    for event in run.events:
        if event["kind"] == "node_finished":
            event["data"].update(
                output_full=text, output_capture="full", output_sha256=hashlib.sha256(text.encode()).hexdigest()
            )
    return run


def _rewrite_from(path: Path, seq: int) -> None:
    """Edit the entry of ledger row ``seq`` and rehash the chain from it on, so that the chain still holds."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("DROP TRIGGER IF EXISTS ledger_no_update")
        db.execute("BEGIN")
        db.execute("UPDATE ledger SET producer_seq = producer_seq + 1 WHERE seq = ?", (seq,))
        (prev,) = db.execute("SELECT prev_hash FROM ledger WHERE seq = ?", (seq,)).fetchone()
        rows = db.execute(f"SELECT {ENTRY_COLUMNS.format('')} FROM ledger WHERE seq >= ? ORDER BY seq", (seq,))
        for row in rows.fetchall():
            own = entry_hash(bytes(prev), entry_of(row))
            db.execute("UPDATE ledger SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, own, row[1]))
            prev = own
        db.execute("COMMIT")
    finally:
        db.close()


async def test_an_entry_rewritten_with_its_chain_is_caught_by_the_tree(tmp_path: Path) -> None:
    """The node's entry edited and the chain rehashed after it: the chain check passes and the inclusion proof
    against the stored subtree over its block fails; a run in the next block, not yet a stored subtree, whose entries
    were not edited but rehashed (a format-3 entry's chain hash is its leaf), still proves against the head made
    from those leaves: a signed checkpoint taken before is what catches that rewrite."""
    path = tmp_path / "evidence.db"
    store = SqliteStore(path)
    await store.open()
    try:
        target, later = _run_with_full_output(), _run_with_full_output()
        events = target.events + [e for _ in range(70) for e in simple_run().events] + later.events
        assert {outcome for outcome, _ in await store.append(prepared(events))} == {EventOutcome.ACCEPTED}
        assert (await store.tree_head()).size == len(events) > 256
        before = await store.resume_evidence(target.run_id)
        assert before is not None
        assert before["nodes"][0]["tampered"] is False
    finally:
        await store.close()
    db = sqlite3.connect(path)
    (seq,) = db.execute("SELECT output_seq FROM node_runs WHERE run_id = ?", (target.run_id,)).fetchone()
    db.close()
    _rewrite_from(path, seq)
    store = SqliteStore(path)
    await store.open()
    try:
        evidence = await store.resume_evidence(target.run_id)
        assert evidence is not None
        (node,) = evidence["nodes"]
        assert node["tampered"] is True
        assert node["output"] is None
        assert f"ledger entry {seq} is not in the ledger's Merkle tree" in node["problem"]
        rehashed = await store.resume_evidence(later.run_id)
        assert rehashed is not None
        assert rehashed["nodes"][0]["tampered"] is False
        assert rehashed["nodes"][0]["output"] is not None
    finally:
        await store.close()
