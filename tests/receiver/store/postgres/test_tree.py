"""PostgreSQL's Merkle tree reads: small subtrees are folded a block of entries at a time, shared by proofs."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import asyncpg

from flowledger.receiver.store._entry import entry_leaf
from flowledger.receiver.store._merkle import STORED_MIN_LEVEL, BlockFolds, verify_inclusion
from flowledger.receiver.store._protocol import EventOutcome, TreeHead
from flowledger.receiver.store.postgres import PostgresStore
from flowledger.receiver.store.postgres._tree import pg_inclusion_path, pg_run_proof
from tests.receiver._support import run_among_others, simple_run
from tests.receiver.store.conformance.conftest import prepared

_BLOCK = 1 << STORED_MIN_LEVEL


class _CountingReads:
    """A real connection that counts the statements reading a range of ledger entries."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.entry_reads = 0

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        if "FROM ledger WHERE seq >" in sql:
            self.entry_reads += 1
        return list(await self.conn.fetch(sql, *args))

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.conn.fetchval(sql, *args)


async def _ledger(url: str, events: list[dict[str, Any]]) -> TreeHead:
    """Store ``events`` on the database at ``url``; the tree's head after them."""
    store = PostgresStore(url)
    await store.open()
    try:
        assert {outcome for outcome, _ in await store.append(prepared(events))} == {EventOutcome.ACCEPTED}
        return await store.tree_head()
    finally:
        await store.close()


def test_proofs_sharing_what_they_folded_read_each_block_of_entries_once(postgres_url: str) -> None:
    """The audit paths of the first two blocks' every entry, sharing one ``BlockFolds``, read three blocks of entries
    (their own two and the newest, not yet full) and all verify; a path without the shared folds is the same."""

    async def main() -> None:
        head = await _ledger(postgres_url, [e for _ in range(155) for e in simple_run().events])  # 620 entries
        conn = await asyncpg.connect(postgres_url)
        try:
            counting = _CountingReads(conn)
            folds = BlockFolds(STORED_MIN_LEVEL)
            reader = cast(asyncpg.Connection, counting)
            paths = [await pg_inclusion_path(reader, index, head.size, folds) for index in range(2 * _BLOCK)]
            assert counting.entry_reads == 3
            rows = await conn.fetch("SELECT prev_hash, entry FROM ledger ORDER BY seq")
            leaves = [entry_leaf(bytes(row[0]), bytes(row[1])) for row in rows]
            for index, path in enumerate(paths):
                assert verify_inclusion(leaves[index], index, head.size, path, head.root)
            for index in (0, 255, 256, 511):
                assert paths[index] == await pg_inclusion_path(conn, index, head.size)
        finally:
            await conn.close()

    asyncio.run(main())


def test_a_run_spread_over_many_blocks_reads_each_block_once(postgres_url: str) -> None:
    """The proofs of a run whose entries lie in six blocks, more than the blocks kept, read each block once: the
    subtrees wanted are folded block by block, not level by level across every block."""

    async def main() -> None:
        spread, events = run_among_others(6, between=63)  # 252 entries before each step's two
        head = await _ledger(postgres_url, events)
        conn = await asyncpg.connect(postgres_url)
        try:
            counting = _CountingReads(conn)
            proofs = await pg_run_proof(cast(asyncpg.Connection, counting), spread.run_id, None, head.size)
            assert len(proofs) == len(spread.events)
            blocks = {(proof.seq - 1) >> STORED_MIN_LEVEL for proof in proofs} | {(head.size - 1) >> STORED_MIN_LEVEL}
            assert len(blocks) > 4
            assert counting.entry_reads == len(blocks)
            for proof in proofs:
                assert verify_inclusion(proof.leaf, proof.seq - 1, head.size, proof.path, head.root)
        finally:
            await conn.close()

    asyncio.run(main())
