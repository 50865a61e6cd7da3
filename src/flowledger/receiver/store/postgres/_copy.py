"""Copying a SQLite ledger into an empty PostgreSQL database, and proving the copy.

The ledger is copied as it is, row for row (entries, hashes, payloads,
full-output blobs, the Merkle tree's stored nodes), never re-appended: so the
copy has the same chain, the same head and the same tree root, purged
payloads and purge entries included. The projections are then folded from the
copied ledger (``rebuild``), and both databases are verified; the copy is
proven when both verify and their heads and tree roots are equal.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from flowledger._exceptions import LedgerIntegrityError, StoreError
from flowledger.receiver.store._protocol import Drift, TreeHead, VerifyReport
from flowledger.receiver.store._sqlite import SqliteStore
from flowledger.receiver.store.postgres._store import PostgresStore

__all__ = ["CopyReport", "copy_sqlite_ledger"]

COPY_CHUNK: Final = 5_000
_TABLES: Final = (
    (
        "ledger",
        ("seq", "event_id", "run_id", "kind", "ts", "received_at", "entry", "payload_hash", "prev_hash", "hash"),
    ),
    ("payloads", ("seq", "body")),
    ("merkle_nodes", ("level", "idx", "hash")),
    ("blobs", ("sha256", "body", "size")),
    (
        "purged_totals",
        (
            "workflow_id",
            "project",
            "day",
            "status",
            "runs",
            "cost_usd",
            "duration_ms_sum",
            "durations",
            "duration_ms_max",
        ),
    ),
)
"""What is copied, in this order, and the columns (the same names on both engines)."""
_KEYS: Final = {
    "ledger": "seq",
    "payloads": "seq",
    "merkle_nodes": "level, idx",
    "blobs": "sha256",
    "purged_totals": "workflow_id, project, day, status",
}
_BYTES: Final = {"entry", "payload_hash", "prev_hash", "hash"}


@dataclass(frozen=True, slots=True)
class CopyReport:
    """What was copied and how the two databases compare afterwards."""

    rows: dict[str, int]
    """Rows copied per table."""
    source: VerifyReport
    target: VerifyReport
    source_tree: TreeHead
    target_tree: TreeHead
    drift: Drift
    """The rebuild of the target's projections (against empty ones: every run is "missing")."""

    @property
    def proven(self) -> bool:
        """Both chains verify, with the same head and the same Merkle root."""
        return (
            self.source.ok
            and self.target.ok
            and (self.source.head_seq, self.source.head_hash) == (self.target.head_seq, self.target.head_hash)
            and self.source_tree == self.target_tree
        )

    def as_json(self) -> dict[str, Any]:
        """A JSON-safe summary."""
        return {
            "proven": self.proven,
            "rows": self.rows,
            "runs": len(self.drift.runs_missing),
            "source": {"ok": self.source.ok, "head_seq": self.source.head_seq, "head_hash": self.source.head_hash,
                       "tree_root": self.source_tree.root.hex(), "problem": self.source.problem},
            "target": {"ok": self.target.ok, "head_seq": self.target.head_seq, "head_hash": self.target.head_hash,
                       "tree_root": self.target_tree.root.hex(), "problem": self.target.problem},
        }  # fmt: skip


def _chunks(conn: sqlite3.Connection, table: str, columns: tuple[str, ...]) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of ``table`` in key order, a chunk at a time (blobs as bytes, text as text)."""
    select = ", ".join(f"CAST({c} AS BLOB)" if c in _BYTES else c for c in columns)
    cursor = conn.execute(f"SELECT {select} FROM {table} ORDER BY {_KEYS[table]}")
    while rows := cursor.fetchmany(COPY_CHUNK):
        yield [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows]


async def copy_sqlite_ledger(source: Path, target: PostgresStore) -> CopyReport:
    """Copy the ledger of the SQLite file ``source`` into ``target`` (open, empty), rebuild, verify both.

    StoreError when the target already holds a ledger, or the source is a ledger converted from format 1
    (not copied yet); LedgerIntegrityError when the source does not verify (a broken chain is not copied).
    """
    reader = SqliteStore(source, readers=1, readonly=True)
    await reader.open()
    try:
        source_report = await reader.verify()
        source_tree = await reader.tree_head()
    finally:
        await reader.close()
    if not source_report.ok:
        raise LedgerIntegrityError(
            f"{source} does not verify at entry {source_report.first_bad_seq}: {source_report.problem}; "
            "it is not copied"
        )
    if await target.ledger_size() != 0:
        raise StoreError(f"{target.name} already holds a ledger; copy into an empty database")
    conn = sqlite3.connect(f"{Path(source).resolve().as_uri()}?mode=ro", uri=True)  # a name with ? or # too
    rows: dict[str, int] = {}
    try:
        if conn.execute("SELECT count(*) FROM ledger_origin WHERE v1_head_seq > 0").fetchone()[0]:
            raise StoreError(f"{source} was converted from ledger format 1; copying such a ledger is not built yet")
        async with target.raw_transaction() as pg:
            if await pg.fetchval("SELECT count(*) FROM ledger"):
                raise StoreError(f"{target.name} already holds a ledger; copy into an empty database")
            for table, columns in _TABLES:
                rows[table] = 0
                for chunk in _chunks(conn, table, columns):
                    await pg.copy_records_to_table(table, records=chunk, columns=list(columns))
                    rows[table] += len(chunk)
    finally:
        conn.close()
    drift = await target.rebuild()
    return CopyReport(
        rows=rows,
        source=source_report,
        target=await target.verify(),
        source_tree=source_tree,
        target_tree=await target.tree_head(),
        drift=drift,
    )
