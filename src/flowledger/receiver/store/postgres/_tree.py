"""The ledger's Merkle tree as the PostgreSQL engine keeps it (the algorithms are in :mod:`.._merkle`).

The same layout as the SQLite engine: leaves are the ``entry`` bytes of the
ledger rows, ``merkle_nodes`` holds every perfect subtree of level
:data:`~.._merkle.STORED_MIN_LEVEL` and up, written in the transaction that
completes it; smaller subtrees are folded from the entries.
"""

from __future__ import annotations

import functools
from array import array
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Final

from flowledger.receiver.store._entry import entry_leaf
from flowledger.receiver.store._merkle import (
    STORED_MIN_LEVEL,
    BlockFolds,
    Frontier,
    PerfectHash,
    consistency_path,
    inclusion_path,
    node_hash,
)
from flowledger.receiver.store._namespace import one_namespace
from flowledger.receiver.store._protocol import EntryProof, TreeHead
from flowledger.receiver.store._tree import PROOF_CHUNK
from flowledger.receiver.store.postgres._namespace import PG_NAMESPACES_SQL

if TYPE_CHECKING:
    import asyncpg

__all__ = ["Snapshot", "load_frontier", "pg_consistency", "pg_inclusion_path", "pg_iter_run_proof", "pg_run_proof"]

_CHUNK: Final = 2_000


def _fold_leaves(leaves: list[bytes]) -> bytes:
    while len(leaves) > 1:
        leaves = [node_hash(leaves[i], leaves[i + 1]) for i in range(0, len(leaves), 2)]
    return leaves[0]


async def load_frontier(conn: asyncpg.Connection, size: int) -> Frontier:
    """The frontier of the first ``size`` entries."""
    hashes, start = [], 0
    for level in range(size.bit_length() - 1, -1, -1):
        if not size >> level & 1:
            continue
        index = start >> level
        if level >= STORED_MIN_LEVEL:
            found = await conn.fetchval("SELECT hash FROM merkle_nodes WHERE level = $1 AND idx = $2", level, index)
            if found is None:
                raise LookupError(f"the Merkle tree node at level {level}, index {index} is missing")
            hashes.append(bytes(found))
        else:
            rows = await conn.fetch(
                "SELECT entry, prev_hash FROM ledger WHERE seq > $1 AND seq <= $2 ORDER BY seq",
                start,
                start + (1 << level),
            )
            hashes.append(_fold_leaves([entry_leaf(bytes(row[1]), bytes(row[0])) for row in rows]))
        start += 1 << level
    return Frontier(size, hashes)


async def _perfect_hashes(
    conn: asyncpg.Connection, wanted: set[tuple[int, int]], folds: BlockFolds | None = None
) -> dict[tuple[int, int], bytes]:
    """The hashes of the perfect subtrees ``(level, index)``: stored ones read, small ones folded from entries.

    Small ones are folded a block of ``2 ** STORED_MIN_LEVEL`` entries at a time into ``folds`` (as the SQLite
    engine's reader does): pass the same ``folds`` to the proofs of one answer.
    """
    found: dict[tuple[int, int], bytes] = {}
    folds = BlockFolds(STORED_MIN_LEVEL) if folds is None else folds
    stored = [key for key in wanted if key[0] >= STORED_MIN_LEVEL]
    if stored:
        rows = await conn.fetch(
            "SELECT level, idx, hash FROM merkle_nodes WHERE (level, idx) IN "
            "(SELECT * FROM unnest($1::integer[], $2::bigint[]))",
            [level for level, _ in stored],
            [index for _, index in stored],
        )
        found.update({(int(row[0]), int(row[1])): bytes(row[2]) for row in rows})
        missing = set(stored) - found.keys()
        if missing:
            level, index = min(missing)
            raise LookupError(f"the Merkle tree node at level {level}, index {index} is missing")
    small = [key for key in wanted if key[0] < STORED_MIN_LEVEL]
    for level, index in sorted(small, key=lambda key: (folds.block(*key), key)):  # a block's subtrees together
        subtree = folds.get(level, index)
        if subtree is None:
            block = folds.block(level, index)
            rows = await conn.fetch(
                "SELECT seq, entry, prev_hash FROM ledger WHERE seq > $1 AND seq <= $2 ORDER BY seq",
                block,
                block + (1 << STORED_MIN_LEVEL),
            )
            folds.fold(block, {int(row[0]) - 1: entry_leaf(bytes(row[2]), bytes(row[1])) for row in rows})
            subtree = folds.get(level, index)
            if subtree is None:
                lo = index << level
                raise LookupError(f"entries {lo + 1}..{lo + (1 << level)} are missing from the ledger")
        found[(level, index)] = subtree
    return found


def _asked(compute: Callable[[PerfectHash], object]) -> set[tuple[int, int]]:
    """The subtrees ``compute`` asks ``perfect`` for (answered with placeholders: the hashes do not steer it)."""
    wanted: set[tuple[int, int]] = set()

    def record(level: int, index: int) -> bytes:
        wanted.add((level, index))
        return bytes(32)

    compute(record)
    return wanted


async def pg_consistency(conn: asyncpg.Connection, old_size: int) -> tuple[TreeHead, list[bytes]]:
    """The head now and the consistency proof from ``old_size`` (empty when the tree is not larger)."""
    size = int(await conn.fetchval("SELECT coalesce(max(seq), 0) FROM ledger"))
    head = TreeHead(size, (await load_frontier(conn, size)).root())
    if old_size <= 0 or old_size >= size:
        return head, []
    hashes = await _perfect_hashes(conn, _asked(lambda perfect: consistency_path(old_size, size, perfect)))
    return head, consistency_path(old_size, size, lambda level, index: hashes[(level, index)])


def _inclusion(index: int, size: int, perfect: PerfectHash) -> list[bytes]:
    return inclusion_path(index, size, perfect)


async def pg_inclusion_path(
    conn: asyncpg.Connection, index: int, size: int, folds: BlockFolds | None = None
) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of the first ``size`` entries (``folds``: see
    :func:`_perfect_hashes`)."""
    hashes = await _perfect_hashes(conn, _asked(functools.partial(_inclusion, index, size)), folds)
    return inclusion_path(index, size, lambda level, i: hashes[(level, i)])


_PROOF_ROWS: Final = (
    "SELECT l.seq, l.entry, l.prev_hash, convert_to(p.body, 'UTF8') FROM ledger l "
    "LEFT JOIN payloads p ON p.seq = l.seq "
)


async def _proofs(conn: asyncpg.Connection, rows: Sequence[Any], tree_size: int) -> list[EntryProof]:
    """The proofs of ledger ``rows`` (seq, entry, prev_hash, payload) in the tree of ``tree_size`` entries."""
    wanted: set[tuple[int, int]] = set()
    for row in rows:
        wanted |= _asked(functools.partial(_inclusion, int(row[0]) - 1, tree_size))
    hashes = await _perfect_hashes(conn, wanted)
    return [
        EntryProof(
            seq=int(seq),
            entry=bytes(entry),
            prev_hash=bytes(prev_hash),
            payload=None if payload is None else bytes(payload),
            path=inclusion_path(int(seq) - 1, tree_size, lambda level, index: hashes[(level, index)]),
        )
        for seq, entry, prev_hash, payload in rows
    ]


async def _check_size(conn: asyncpg.Connection, tree_size: int) -> None:
    if tree_size > int(await conn.fetchval("SELECT coalesce(max(seq), 0) FROM ledger")):
        raise LookupError(f"the ledger has fewer than {tree_size} entries now")


async def pg_run_proof(conn: asyncpg.Connection, run_id: str, space: str | None, tree_size: int) -> list[EntryProof]:
    """The entries of a run among the first ``tree_size``, each with its payload and audit path (all at once:
    :func:`pg_iter_run_proof` reads a large run a chunk at a time).

    ``space`` is the run's project ('' for none); None takes the entries of ``run_id`` in every project.
    """
    await _check_size(conn, tree_size)
    rows = await conn.fetch(
        _PROOF_ROWS + "WHERE l.run_id = $1 AND ($3::text IS NULL OR flowledger_entry_project(l.entry) = $3) "
        "AND l.seq <= $2 ORDER BY l.seq",
        run_id,
        tree_size,
        space,
    )
    return await _proofs(conn, rows, tree_size)


Snapshot = Callable[[], AbstractAsyncContextManager["asyncpg.Connection"]]
"""Opens a read-only, repeatable-read transaction on a pooled connection (the store's)."""


async def pg_iter_run_proof(
    snapshot: Snapshot, run_id: str, project: str | None, tree_size: int, chunk: int = PROOF_CHUNK
) -> AsyncIterator[list[EntryProof]]:
    """A run's proof a chunk of entries at a time (as the SQLite engine's ``iter_run_proof``).

    One snapshot finds the run's namespace and the seqs of its entries (8 bytes each); each chunk is then read
    and proven in a snapshot of its own, the connection handed back before the chunk is yielded. The first
    ``tree_size`` entries and their tree never change, so the chunks need no common snapshot.
    """
    async with snapshot() as conn:
        space = one_namespace(run_id, project, await conn.fetch(PG_NAMESPACES_SQL, run_id))
        if project is not None and space is None:
            return
        await _check_size(conn, tree_size)
        rows = await conn.fetch(
            "SELECT seq FROM ledger WHERE run_id = $1 AND ($3::text IS NULL OR flowledger_entry_project(entry) = $3) "
            "AND seq <= $2 ORDER BY seq",
            run_id,
            tree_size,
            space,
        )
        seqs = array("q", (int(row[0]) for row in rows))
        del rows
    for start in range(0, len(seqs), chunk):
        async with snapshot() as conn:
            found = await conn.fetch(
                _PROOF_ROWS + "WHERE l.seq = ANY($1::bigint[]) ORDER BY l.seq", list(seqs[start : start + chunk])
            )
            proofs = await _proofs(conn, found, tree_size)
        yield proofs
