"""Tampering helpers of the ledger tests: what an owner of the file can do by hand."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from flowledger.receiver.store._canonical import chain_hash
from flowledger.receiver.store._entry import (
    ENTRY_COLUMNS,
    entry_format,
    entry_hash,
    entry_leaf,
    entry_of,
    parse_entry,
)
from flowledger.receiver.store._merkle import Frontier, leaf_hash
from flowledger.receiver.store._migrations import _V5_RUN_COUNTS, MIGRATIONS, _ledger_format_3, _statements
from flowledger.receiver.store._tree import stored_nodes

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
    """Edit entry ``seq`` (``old`` -> ``new`` in its bytes, stored in its entry column, its producer columns made to
    match) and recompute every hash after it, chain and tree."""
    tamper(db)
    conn = sqlite3.connect(db)
    rows = conn.execute(f"SELECT {ENTRY_COLUMNS.format('')}, prev_hash FROM ledger ORDER BY seq").fetchall()
    prev = rows[0][-1] if rows else b""
    tree, nodes = Frontier(), []
    for row in rows:
        entry = entry_of(row[:10])
        if row[1] == seq:
            entry = entry.replace(old, new)
            fields = parse_entry(entry)  # the columns follow, as an insider who knows verify checks them would
            conn.execute(
                "UPDATE ledger SET entry = ?, producer_id = ?, producer_seq = ? WHERE seq = ?",
                (entry, fields.get("producer_id"), fields.get("producer_seq"), seq),
            )
        digest = entry_hash(prev, entry)
        conn.execute("UPDATE ledger SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, row[1]))
        nodes += stored_nodes(tree.append(entry_leaf(prev, entry)))
        prev = digest
    conn.execute("DELETE FROM merkle_nodes")
    conn.executemany("INSERT INTO merkle_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)
    conn.commit()
    conn.close()


def run_counts_as_before(conn: sqlite3.Connection) -> None:
    """Make ``run_counts`` and its triggers what schema version 5 made, counted from the runs (for tests that take
    a database back to a schema version before the counts kept whole dollars and nano-dollars apart)."""
    for trigger in ("before_insert", "after_insert", "after_update", "after_delete"):
        conn.execute(f"DROP TRIGGER IF EXISTS run_counts_{trigger}")
    conn.execute("DROP TABLE IF EXISTS run_counts")
    for statement in _statements(_V5_RUN_COUNTS):
        conn.execute(statement)


def store_entry_bytes(conn: sqlite3.Connection) -> None:
    """Store every entry's bytes in its row, as ledgers made before entries were kept as fields did (for tests
    that take a database back to an older schema version, whose migrations copy the entry column)."""
    conn.execute("DROP TRIGGER IF EXISTS ledger_no_update")
    rows = conn.execute(f"SELECT {ENTRY_COLUMNS.format('')} FROM ledger").fetchall()
    conn.executemany("UPDATE ledger SET entry = ? WHERE seq = ?", [(entry_of(row), row[1]) for row in rows])


def as_format2(db: Path) -> None:
    """Make the ledger of ``db`` what a receiver before ledger format 3 wrote: every entry of format 2, kept as its
    fields (NULL in the ``entry`` column), chained by ``SHA-256(prev_hash || entry)`` with the Merkle leaf
    ``SHA-256(0x00 || entry)``; the schema version the one before format 3, the append-only triggers as they were."""
    conn = sqlite3.connect(db, isolation_level=None)
    triggers = [
        str(row)
        for name, row in conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
        if name in TRIGGERS
    ]
    conn.execute("BEGIN")
    for trigger in TRIGGERS:
        conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    rows = conn.execute(f"SELECT {ENTRY_COLUMNS.format('')}, prev_hash FROM ledger ORDER BY seq").fetchall()
    prev = bytes(rows[0][-1]) if rows else b""
    tree, nodes = Frontier(), []
    for row in rows:
        entry = entry_of((None, *row[1:10]))  # the same fields, as format 2 wrote them
        assert entry_format(entry) == 2
        assert entry_of(row[:10]) == entry.replace(b'"v":2}', b'"v":3}')
        digest = chain_hash(prev, entry)
        conn.execute("UPDATE ledger SET entry = NULL, prev_hash = ?, hash = ? WHERE seq = ?", (prev, digest, row[1]))
        nodes += stored_nodes(tree.append(leaf_hash(entry)))
        prev = digest
    conn.execute("DELETE FROM merkle_nodes")
    conn.executemany("INSERT INTO merkle_nodes (level, idx, hash) VALUES (?, ?, ?)", nodes)
    for sql in triggers:
        conn.execute(sql)
    conn.execute(f"PRAGMA user_version = {MIGRATIONS.index(_ledger_format_3)}")
    conn.execute("COMMIT")
    conn.close()
