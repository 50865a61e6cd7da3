"""Tampering helpers of the ledger tests: what an owner of the file can do by hand."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from flowledger.receiver.store._canonical import chain_hash
from flowledger.receiver.store._tree import backfill

TRIGGERS = (
    "ledger_no_update",
    "ledger_no_delete",
    "ledger_append_only",
    "payloads_no_update",
    "merkle_nodes_no_update",
    "merkle_nodes_no_delete",
    "merkle_nodes_append_only",
)


def tamper(db: Path, *statements: str) -> None:
    """Drop every append-only trigger, then run ``statements``."""
    conn = sqlite3.connect(db)
    for trigger in TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    for statement in statements:
        conn.execute(statement)
    conn.commit()
    conn.close()


def rewrite_history(db: Path, seq: int, old: bytes, new: bytes) -> None:
    """Edit entry ``seq`` (``old`` -> ``new`` in its bytes) and recompute every hash after it, chain and tree."""
    tamper(db)
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT seq, entry, prev_hash FROM ledger ORDER BY seq").fetchall()
    prev = rows[0][2] if rows else b""
    for row_seq, entry, _ in rows:
        if row_seq == seq:
            entry = entry.replace(old, new)
        digest = chain_hash(prev, entry)
        conn.execute(
            "UPDATE ledger SET entry = ?, prev_hash = ?, hash = ? WHERE seq = ?", (entry, prev, digest, row_seq)
        )
        prev = digest
    conn.execute("DELETE FROM merkle_nodes")
    backfill(conn)
    conn.commit()
    conn.close()
