"""A SQLite database as the first ledger format left it, for the tests of converting and copying it."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

from flowledger.receiver.store._canonical import GENESIS_HASH, chain_hash
from flowledger.receiver.store._migrations import MIGRATIONS
from tests.receiver._support import simple_run, typical_run
from tests.receiver.store.conformance.conftest import prepared

__all__ = ["FORMAT1_VERSION", "format1_ledger"]

FORMAT1_VERSION: Final = 9
"""The last schema version whose ledger is format 1 (versions 10 and 11 bring format 2 and the Merkle tree)."""


def format1_ledger(path: Path) -> list[str]:
    """A database at the last format-1 schema version, 23 format-1 rows; returns the head SEQ:HASH after each row."""
    conn = sqlite3.connect(path, isolation_level=None)
    for script in MIGRATIONS[:FORMAT1_VERSION]:
        assert isinstance(script, str)
        conn.executescript(script)
    conn.execute(f"PRAGMA user_version = {FORMAT1_VERSION}")
    prev, heads = GENESIS_HASH, []
    events = [e for run in (typical_run(), simple_run(), simple_run()) for e in prepared(run.events)]
    for seq, event in enumerate(events, start=1):
        digest = chain_hash(prev, event.body_bytes)
        conn.execute(
            "INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (seq, event.event_id, event.run_id, event.kind, event.ts, event.ts, event.body, prev, digest),
        )
        prev = digest
        heads.append(f"{seq}:{digest.hex()}")
    conn.close()
    return heads
