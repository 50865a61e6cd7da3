"""The ledger's Merkle tree as the PostgreSQL engine keeps it (the algorithms are in :mod:`.._merkle`).

The same layout as the SQLite engine: leaves are the ``entry`` bytes of the
ledger rows, ``merkle_nodes`` holds every perfect subtree of level
:data:`~.._merkle.STORED_MIN_LEVEL` and up, written in the transaction that
completes it; smaller subtrees are folded from the entries.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Final

from flowledger.receiver.store._merkle import STORED_MIN_LEVEL, Frontier, leaf_hash, node_hash
from flowledger.receiver.store._protocol import VerifyReport

if TYPE_CHECKING:
    import asyncpg

__all__ = ["load_frontier", "verify_tree"]

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
                "SELECT entry FROM ledger WHERE seq > $1 AND seq <= $2 ORDER BY seq", start, start + (1 << level)
            )
            hashes.append(_fold_leaves([leaf_hash(bytes(row[0])) for row in rows]))
        start += 1 << level
    return Frontier(size, hashes)


async def verify_tree(
    conn: asyncpg.Connection, report: VerifyReport, expected: dict[tuple[int, int], bytes]
) -> VerifyReport:
    """Check the stored Merkle tree nodes against the ones recomputed from the entries."""
    seen, last = 0, (-1, -1)
    while True:
        rows = await conn.fetch(
            "SELECT level, idx, hash FROM merkle_nodes WHERE (level, idx) > ($1, $2) ORDER BY level, idx LIMIT $3",
            *last,
            _CHUNK,
        )
        if not rows:
            break
        last = (int(rows[-1][0]), int(rows[-1][1]))
        for level, index, digest in rows:
            seen += 1
            if expected.get((level, index)) != bytes(digest):
                first = (index << level) + 1
                problem = (
                    f"the stored Merkle tree node at level {level}, index {index} (entries {first}.."
                    f"{first + (1 << level) - 1}) does not match the entries (the tree was edited)"
                )
                return dataclasses.replace(report, ok=False, first_bad_seq=first, problem=problem)
    if seen != len(expected):
        problem = f"{len(expected) - seen} stored Merkle tree nodes are missing (the tree was edited)"
        return dataclasses.replace(report, ok=False, problem=problem)
    return report
