"""The ``blobs`` table: complete payloads captured in full, keyed by the sha256 of their JSON text.

The ledger entry of the event a blob came with commits to its hash (the
event's ``output_sha256`` or ``trigger_data_sha256`` is in the payload the
entry hashes); the blob itself lives apart so that the narrow rows and the
ledger stay small and an output repeated across runs is stored once. A
purge removes the blobs that no remaining run or node attempt refers to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import aiosqlite

from flowledger.receiver.store._bulk import insert_rows
from flowledger.receiver.store._on_thread import WriteConnection

__all__ = ["collect_purged_blobs", "drop_unreferenced_blobs", "store_blobs"]

_INSERT_BLOBS: Final = "INSERT OR IGNORE INTO blobs (sha256, body, size)"


async def store_blobs(conn: WriteConnection, blobs: Sequence[tuple[str, str]]) -> None:
    """Store ``(sha256, text)`` pairs (inside the caller's transaction); a hash already stored is kept."""
    if blobs:
        rows = [(digest, text, len(text.encode("utf-8"))) for digest, text in dict(blobs).items()]
        await insert_rows(conn, _INSERT_BLOBS, rows, width=3)


async def collect_purged_blobs(conn: aiosqlite.Connection) -> None:
    """Note the blobs the runs in ``temp.purge_set`` refer to, before their rows go."""
    await conn.execute("CREATE TEMP TABLE IF NOT EXISTS purge_blobs (sha256 TEXT PRIMARY KEY)")
    await conn.execute(
        "INSERT OR IGNORE INTO temp.purge_blobs SELECT output_sha256 FROM node_runs "
        "WHERE (run_id, ifnull(project, '')) IN (SELECT run_id, space FROM temp.purge_set) "
        "AND output_sha256 IS NOT NULL"
    )
    await conn.execute(
        "INSERT OR IGNORE INTO temp.purge_blobs SELECT input_sha256 FROM runs "
        "WHERE (run_id, ifnull(project, '')) IN (SELECT run_id, space FROM temp.purge_set) AND input_sha256 IS NOT NULL"
    )


async def drop_unreferenced_blobs(conn: aiosqlite.Connection) -> None:
    """Delete the noted blobs that no remaining run or node attempt refers to."""
    await conn.execute(
        "DELETE FROM blobs WHERE sha256 IN (SELECT sha256 FROM temp.purge_blobs) "
        "AND NOT EXISTS (SELECT 1 FROM node_runs n WHERE n.output_sha256 = blobs.sha256) "
        "AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.input_sha256 = blobs.sha256)"
    )
    await conn.execute("DELETE FROM temp.purge_blobs")
