"""``verify`` on the PostgreSQL engine: the reads of :class:`~.._verify.VerifyReads` in its spelling.

What is checked, and in which order, is :func:`~.._verify.verify_ledger`'s, as
on SQLite: the chain from its origin, the stored Merkle tree, the full-output
blobs (:class:`~.._verify.BlobReads`), the format-1
hashes a ledger converted from format 1 keeps (copied from SQLite by
``flowledger migrate``), the checkpoints. Every read runs on one
repeatable-read snapshot, so appends committed meanwhile are not seen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from flowledger.receiver.store._canonical import GENESIS_HASH
from flowledger.receiver.store._protocol import VerifyReport
from flowledger.receiver.store._verify import EntryRow, Format1HashRow, TreeNodeRow, verify_ledger

if TYPE_CHECKING:
    import asyncpg

__all__ = ["pg_verify", "pg_verify_in_snapshot"]

_ENTRIES_SQL: Final = (
    "SELECT l.seq, l.event_id, l.run_id, l.kind, l.ts, l.entry, l.payload_hash, l.prev_hash, l.hash, "
    "convert_to(p.body, 'UTF8') FROM ledger l LEFT JOIN payloads p ON p.seq = l.seq "
    "WHERE l.seq > $1 ORDER BY l.seq LIMIT $2"
)
_TREE_NODES_SQL: Final = (
    "SELECT level, idx, hash FROM merkle_nodes WHERE (level, idx) > ($1, $2) ORDER BY level, idx LIMIT $3"
)
_FORMAT1_HASHES_SQL: Final = (
    "SELECT v.seq, v.hash, l.event_id, convert_to(p.body, 'UTF8') FROM ledger_v1 v "
    "LEFT JOIN ledger l ON l.seq = v.seq LEFT JOIN payloads p ON p.seq = v.seq "
    "WHERE v.seq > $1 ORDER BY v.seq LIMIT $2"
)

_BLOBS_SQL: Final = (
    "SELECT sha256, convert_to(body, 'UTF8') FROM blobs WHERE sha256 > $1 COLLATE \"C\" ORDER BY sha256 LIMIT $2"
)
_BLOB_OWNER_SQL: Final = "SELECT min(seq) FROM payloads WHERE strpos(body, $1) > 0"
"""The first payload naming a blob's key (its ``output_sha256`` or ``trigger_data_sha256``): read only for a bad
blob, so a full scan is paid only when ``verify`` fails."""


class _PgVerifyReads:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def origin(self) -> tuple[int, bytes]:
        row = await self._conn.fetchrow("SELECT v1_head_seq, v1_head_hash FROM ledger_origin")
        return (0, GENESIS_HASH) if row is None else (int(row[0]), bytes(row[1]))

    async def entries(self, after_seq: int, limit: int) -> Sequence[EntryRow]:
        return [tuple(row) for row in await self._conn.fetch(_ENTRIES_SQL, after_seq, limit)]

    async def tree_nodes(self, after: tuple[int, int], limit: int) -> Sequence[TreeNodeRow]:
        return [tuple(row) for row in await self._conn.fetch(_TREE_NODES_SQL, *after, limit)]

    async def format1_hashes(self, after_seq: int, limit: int) -> Sequence[Format1HashRow]:
        return [tuple(row) for row in await self._conn.fetch(_FORMAT1_HASHES_SQL, after_seq, limit)]

    async def blobs(self, after: str, limit: int) -> Sequence[tuple[str, bytes]]:
        return [(str(key), bytes(body)) for key, body in await self._conn.fetch(_BLOBS_SQL, after, limit)]

    async def blob_owner(self, key: str) -> int | None:
        seq = await self._conn.fetchval(_BLOB_OWNER_SQL, key)
        return None if seq is None else int(seq)


async def pg_verify(conn: asyncpg.Connection, checkpoints: Sequence[tuple[int, str]]) -> VerifyReport:
    """Verify the ledger on one read-only repeatable-read snapshot (see :func:`~.._verify.verify_ledger`)."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return await pg_verify_in_snapshot(conn, checkpoints)


async def pg_verify_in_snapshot(conn: asyncpg.Connection, checkpoints: Sequence[tuple[int, str]] = ()) -> VerifyReport:
    """Verify the ledger in the snapshot ``conn``'s repeatable-read transaction already holds (copying it out)."""
    return await verify_ledger(_PgVerifyReads(conn), checkpoints)
