"""The SQLite engine's Merkle tree reader: small subtrees are folded a block of entries at a time, once."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from flowledger.receiver.store._entry import ENTRY_COLUMNS, entry_leaf, entry_of
from flowledger.receiver.store._merkle import STORED_MIN_LEVEL, inclusion_path, node_hash, verify_inclusion
from flowledger.receiver.store._protocol import EventOutcome
from flowledger.receiver.store._sqlite import SqliteStore
from flowledger.receiver.store._tree import perfect_reader, run_proof, tree_head
from tests.receiver._support import run_among_others, simple_run
from tests.receiver.store.conformance.conftest import prepared

pytestmark = pytest.mark.asyncio

_BLOCK = 1 << STORED_MIN_LEVEL


async def _ledger(path: Path, events: list[dict[str, Any]]) -> None:
    store = SqliteStore(path)
    await store.open()
    try:
        assert {outcome for outcome, _ in await store.append(prepared(events))} == {EventOutcome.ACCEPTED}
    finally:
        await store.close()


def _simple_runs(count: int) -> list[dict[str, Any]]:
    return [e for _ in range(count) for e in simple_run().events]


async def test_the_proofs_of_many_entries_read_each_block_of_entries_once(tmp_path: Path) -> None:
    """Audit paths of the first two blocks' every entry, through one reader, read the entries of each block the
    paths need once (three: their own two and the newest, not yet full), where each path used to read its own
    smaller subtrees; every path verifies against the head."""
    path = tmp_path / "tree.db"
    await _ledger(path, _simple_runs(155))  # 620 entries: two full blocks and 108 entries of a third
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        head = tree_head(conn)
        assert head.size == 620
        reads: list[str] = []
        conn.set_trace_callback(lambda sql: reads.append(sql) if "FROM ledger WHERE seq >" in sql else None)
        conn.execute("BEGIN")
        perfect = perfect_reader(conn)
        paths = {index: inclusion_path(index, head.size, perfect) for index in range(2 * _BLOCK)}
        conn.execute("ROLLBACK")
        assert len(reads) == 3, reads
        fresh = perfect_reader(conn)
        for index, path_of in paths.items():
            assert verify_inclusion(_leaf(conn, index + 1), index, head.size, path_of, head.root)
        for index in (0, 1, 255, 256, 511):
            assert paths[index] == inclusion_path(index, head.size, fresh)
    finally:
        conn.close()


def _leaf(conn: sqlite3.Connection, seq: int) -> bytes:
    row = conn.execute(f"SELECT {ENTRY_COLUMNS.format('')}, prev_hash FROM ledger WHERE seq = ?", (seq,)).fetchone()
    return entry_leaf(bytes(row[10]), entry_of(row[:10]))


async def test_a_missing_entry_is_named_and_the_rest_of_its_block_still_proves(tmp_path: Path) -> None:
    """With an entry gone from the file, a subtree over it is reported missing by its entries; a subtree of the
    same block that does not hold it is still folded."""
    path = tmp_path / "tree.db"
    await _ledger(path, _simple_runs(70))  # 280 entries
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("DROP TRIGGER ledger_no_delete")
        conn.execute("DELETE FROM ledger WHERE seq = 3")
        perfect = perfect_reader(conn)
        with pytest.raises(LookupError, match=r"entries 1\.\.4 are missing from the ledger"):
            perfect(2, 0)
        leaves = [_leaf(conn, seq) for seq in (5, 6, 7, 8)]
        assert perfect(2, 1) == node_hash(node_hash(leaves[0], leaves[1]), node_hash(leaves[2], leaves[3]))
        with pytest.raises(LookupError, match=r"entries 1\.\.128 are missing"):
            perfect(7, 0)
        nodes = [_leaf(conn, seq) for seq in range(129, 257)]
        while len(nodes) > 1:
            nodes = [node_hash(nodes[i], nodes[i + 1]) for i in range(0, len(nodes), 2)]
        assert perfect(7, 1) == nodes[0]
    finally:
        conn.close()


async def test_a_run_spread_over_many_blocks_reads_each_block_once(tmp_path: Path) -> None:
    """The proofs of a run whose entries lie in six blocks, more than a reader keeps, read each block once (the
    entries are proven in order, so the blocks kept are the one in use and the newest)."""
    spread, events = run_among_others(6, between=63)  # 252 entries before each step's two
    path = tmp_path / "tree.db"
    await _ledger(path, events)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        head = tree_head(conn)
        reads: list[str] = []
        conn.set_trace_callback(lambda sql: reads.append(sql) if "FROM ledger WHERE seq >" in sql else None)
        proofs = run_proof(conn, spread.run_id, None, head.size)
        assert len(proofs) == len(spread.events)
        blocks = {(proof.seq - 1) >> STORED_MIN_LEVEL for proof in proofs} | {(head.size - 1) >> STORED_MIN_LEVEL}
        assert len(blocks) > 4
        assert len(reads) == len(blocks)
        for proof in proofs:
            assert verify_inclusion(proof.leaf, proof.seq - 1, head.size, proof.path, head.root)
    finally:
        conn.close()
