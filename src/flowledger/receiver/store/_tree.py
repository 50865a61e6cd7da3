"""The ledger's Merkle tree as the SQLite store keeps it (the algorithms are in :mod:`._merkle`).

Leaves are the entries of the ``ledger`` rows (leaf ``i`` is ``seq = i + 1``),
each rebuilt from its row's columns or read from its ``entry`` column
(:func:`~._entry.entry_of`); ``merkle_nodes`` holds every perfect subtree of level
:data:`~._merkle.STORED_MIN_LEVEL` and above, written in the same transaction
as the entries that complete it. Smaller subtrees are recomputed from the
entries. Each proof is read in one read transaction, so it describes one
state of the tree; a run's proofs can be read a chunk at a time
(:func:`iter_run_proof`), since the entries and the tree below a checkpoint's
size never change.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Final

from flowledger.receiver.store._entry import ENTRY_COLUMNS, LEDGER_PROJECT, entry_leaf, entry_of
from flowledger.receiver.store._merkle import (
    STORED_MIN_LEVEL,
    BlockFolds,
    Frontier,
    PerfectHash,
    consistency_path,
    inclusion_path,
    node_hash,
)
from flowledger.receiver.store._on_thread import WriteConnection
from flowledger.receiver.store._protocol import EntryProof, TreeHead

__all__ = [
    "MERKLE_SCHEMA",
    "backfill",
    "consistency",
    "frontier_async",
    "iter_run_proof",
    "perfect_reader",
    "run_proof",
    "run_proof_chunk",
    "stored_nodes",
    "tree_head",
]

MERKLE_SCHEMA: Final = """
-- Perfect subtrees of the ledger's Merkle tree (RFC 9162), the larger ones (_merkle.STORED_MIN_LEVEL and up).
CREATE TABLE merkle_nodes (
    level INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TRIGGER merkle_nodes_no_update BEFORE UPDATE ON merkle_nodes
BEGIN SELECT RAISE(ABORT, 'the Merkle tree is append-only: UPDATE is refused'); END;
CREATE TRIGGER merkle_nodes_no_delete BEFORE DELETE ON merkle_nodes
BEGIN SELECT RAISE(ABORT, 'the Merkle tree is append-only: DELETE is refused'); END;
CREATE TRIGGER merkle_nodes_append_only BEFORE INSERT ON merkle_nodes
WHEN EXISTS (SELECT 1 FROM merkle_nodes WHERE level = NEW.level AND idx = NEW.idx)
BEGIN SELECT RAISE(ABORT, 'the Merkle tree is append-only: a stored node cannot be replaced'); END;
"""

_BACKFILL_CHUNK: Final = 5_000
_INSERT_NODE: Final = "INSERT INTO merkle_nodes (level, idx, hash) VALUES (?, ?, ?)"
_ENTRIES_BETWEEN: Final = (
    f"SELECT {ENTRY_COLUMNS.format('')}, prev_hash FROM ledger WHERE seq > ? AND seq <= ? ORDER BY seq"
)
"""The entries after one seq up to another, as :func:`_leaf` reads them."""


def stored_nodes(done: list[tuple[int, int, bytes]]) -> list[tuple[int, int, bytes]]:
    """The completed subtrees the store keeps (level :data:`STORED_MIN_LEVEL` and up)."""
    return [node for node in done if node[0] >= STORED_MIN_LEVEL]


def _leaf(row: Sequence[Any]) -> bytes:
    """The Merkle leaf of a row read through :data:`ENTRY_COLUMNS` and then ``prev_hash``."""
    return entry_leaf(bytes(row[10]), entry_of(row[:10]))


def _fold_leaves(leaves: list[bytes]) -> bytes:
    while len(leaves) > 1:
        leaves = [node_hash(leaves[i], leaves[i + 1]) for i in range(0, len(leaves), 2)]
    return leaves[0]


def perfect_reader(conn: sqlite3.Connection) -> PerfectHash:
    """``perfect(level, index)`` over a synchronous connection: stored, or folded from the entries (a block at a
    time, the last few blocks kept: :class:`~._merkle.BlockFolds`)."""
    folds = BlockFolds(STORED_MIN_LEVEL)

    def perfect(level: int, index: int) -> bytes:
        if level >= STORED_MIN_LEVEL:
            row = conn.execute("SELECT hash FROM merkle_nodes WHERE level = ? AND idx = ?", (level, index)).fetchone()
            if row is None:
                raise LookupError(f"the Merkle tree node at level {level}, index {index} is missing")
            return bytes(row[0])
        found = folds.get(level, index)
        if found is None:
            block = folds.block(level, index)
            rows = conn.execute(_ENTRIES_BETWEEN, (block, block + (1 << STORED_MIN_LEVEL))).fetchall()
            folds.fold(block, {int(row[1]) - 1: _leaf(row) for row in rows})
            found = folds.get(level, index)
            if found is None:
                lo = index << level
                raise LookupError(f"entries {lo + 1}..{lo + (1 << level)} are missing from the ledger")
        return found

    return perfect


async def frontier_async(conn: WriteConnection, size: int) -> Frontier:
    """The frontier of the first ``size`` entries, read over the writer's connection."""
    hashes, start = [], 0
    for level in range(size.bit_length() - 1, -1, -1):
        if not size >> level & 1:
            continue
        index = start >> level
        if level >= STORED_MIN_LEVEL:
            rows = list(
                await conn.execute_fetchall("SELECT hash FROM merkle_nodes WHERE level = ? AND idx = ?", (level, index))
            )
            if not rows:
                raise LookupError(f"the Merkle tree node at level {level}, index {index} is missing")
            hashes.append(bytes(rows[0][0]))
        else:
            entries = await conn.execute_fetchall(_ENTRIES_BETWEEN, (start, start + (1 << level)))
            hashes.append(_fold_leaves([_leaf(row) for row in entries]))
        start += 1 << level
    return Frontier(size, hashes)


def _size(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(seq), 0) FROM ledger").fetchone()[0])


def _head(conn: sqlite3.Connection) -> TreeHead:
    size = _size(conn)
    return TreeHead(size, Frontier.load(size, perfect_reader(conn)).root())


def tree_head(conn: sqlite3.Connection) -> TreeHead:
    """The tree's size and root now."""
    conn.execute("BEGIN")
    try:
        return _head(conn)
    finally:
        conn.execute("ROLLBACK")


def consistency(conn: sqlite3.Connection, old_size: int) -> tuple[TreeHead, list[bytes]]:
    """The head now and the consistency proof from ``old_size`` (empty when the tree is not larger)."""
    conn.execute("BEGIN")
    try:
        head = _head(conn)
        if old_size <= 0 or old_size >= head.size:
            return head, []
        return head, consistency_path(old_size, head.size, perfect_reader(conn))
    finally:
        conn.execute("ROLLBACK")


PROOF_CHUNK: Final = 256
"""Entries of a run proof read, proven and handed on at a time (:func:`run_proof_chunk`): what a proof costs in
memory, whatever the run's size."""

_RUN_ENTRIES: Final = (
    f"SELECT {ENTRY_COLUMNS.format('l.')}, l.prev_hash, CAST(p.body AS BLOB) FROM ledger l "
    "LEFT JOIN payloads p ON p.seq = l.seq WHERE l.run_id = ? AND {space} AND l.seq > ? AND l.seq <= ? "
    "ORDER BY l.seq LIMIT ?"
)
"""A run's entries after a seq, up to the tree's size, with their payloads (``{space}``: the project test)."""


def _proofs(
    conn: sqlite3.Connection, run_id: str, space: str | None, tree_size: int, after: int, limit: int
) -> list[EntryProof]:
    """Up to ``limit`` entries of the run after ``after``, proven in the tree of ``tree_size`` (in a transaction)."""
    if tree_size > _size(conn):
        raise LookupError(f"the ledger has fewer than {tree_size} entries now")
    perfect = perfect_reader(conn)
    params: tuple[str | int, ...]
    if space is None:
        sql, params = _RUN_ENTRIES.format(space="1"), (run_id, after, tree_size, limit)
    else:  # the project in the index (run_id, project): the entries come in seq order from it, no sort
        sql = _RUN_ENTRIES.format(space=LEDGER_PROJECT.format("l.") + " = ?")
        params = (run_id, space, after, tree_size, limit)
    return [
        EntryProof(
            seq=int(row[1]),
            entry=entry_of(row[:10]),
            prev_hash=bytes(row[10]),
            payload=None if row[11] is None else bytes(row[11]),
            path=inclusion_path(int(row[1]) - 1, tree_size, perfect),
        )
        for row in conn.execute(sql, params)
    ]


def run_proof_chunk(
    conn: sqlite3.Connection, run_id: str, space: str | None, tree_size: int, after: int, limit: int = PROOF_CHUNK
) -> list[EntryProof]:
    """Up to ``limit`` entries of a run among the first ``tree_size`` with seq above ``after``, each with its
    payload and audit path, in one read transaction ([] past the last).

    A proof read a chunk at a time needs no transaction across its chunks: the first ``tree_size`` entries and
    the tree over them never change. A payload purged between two chunks is absent from the later ones, as it
    would be from a proof made after the purge (the entry still proves it).
    """
    conn.execute("BEGIN")
    try:
        return _proofs(conn, run_id, space, tree_size, after, limit)
    finally:
        conn.execute("ROLLBACK")


def run_proof(conn: sqlite3.Connection, run_id: str, space: str | None, tree_size: int) -> list[EntryProof]:
    """The entries of a run among the first ``tree_size``, each with its payload and audit path (all of them at
    once, in one read transaction: :func:`run_proof_chunk` reads a large run a chunk at a time).

    ``space`` is the run's project ('' for none); None takes the entries of ``run_id`` in every project.
    """
    conn.execute("BEGIN")
    try:
        return _proofs(conn, run_id, space, tree_size, 0, -1)
    finally:
        conn.execute("ROLLBACK")


async def iter_run_proof(
    read: Callable[[Callable[[sqlite3.Connection], list[EntryProof]]], Awaitable[list[EntryProof]]],
    run_id: str,
    space: str | None,
    tree_size: int,
    chunk: int = PROOF_CHUNK,
) -> AsyncIterator[list[EntryProof]]:
    """A run's proof chunk by chunk (:func:`run_proof_chunk`), each read by ``read`` (a store's read of a
    synchronous connection), none held while the consumer works on the one before."""
    after = 0
    while True:
        found = await read(
            functools.partial(
                run_proof_chunk, run_id=run_id, space=space, tree_size=tree_size, after=after, limit=chunk
            )
        )
        if found:
            yield found
        if len(found) < chunk:
            return
        after = found[-1].seq


def backfill(conn: sqlite3.Connection) -> None:
    """Store the tree of the entries already in the ledger (migration: the table exists; inside its transaction).

    It runs at the schema version that made the tree, where every row stored its entry's bytes.
    """
    frontier, last = Frontier(), 0
    while True:
        rows = conn.execute(
            "SELECT seq, entry, prev_hash FROM ledger WHERE seq > ? ORDER BY seq LIMIT ?", (last, _BACKFILL_CHUNK)
        ).fetchall()
        if not rows:
            return
        last = int(rows[-1][0])
        nodes: list[tuple[int, int, bytes]] = []
        for _, entry, prev_hash in rows:
            nodes += stored_nodes(frontier.append(entry_leaf(bytes(prev_hash), bytes(entry))))
        conn.executemany(_INSERT_NODE, nodes)
