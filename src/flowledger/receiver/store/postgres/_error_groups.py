"""Error groups on PostgreSQL: the ``error_groups`` rows of :mod:`.._error_groups`, written and read.

The failures, their fingerprints, how a batch's failures change a group row
(count, first and last seen, the newest samples) and the API's shape of a
group are :mod:`.._error_groups`'s (:func:`~.._error_groups.failure_deltas`,
:func:`~.._error_groups.group_writes`, :func:`~.._error_groups.group_json`);
only the statements are this engine's. The projector hands them the failures
of each commit group, under the chain's lock, in the ingest's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from flowledger.receiver.store._error_groups import (
    ErrorGroupQuery,
    Failure,
    GroupKey,
    empty_range,
    error_groups_where,
    failure_deltas,
    group_json,
    group_writes,
)
from flowledger.receiver.store.postgres._dialect import numbered

if TYPE_CHECKING:
    import asyncpg

__all__ = ["forget_pg_purged_samples", "pg_error_groups", "record_pg_failures"]

_KEYS: Final = "unnest($1::text[], $2::text[], $3::text[]) AS k (project, fingerprint, hour)"
_READ: Final = (
    "SELECT g.project, g.fingerprint, g.hour, g.count, g.first_seen, g.last_seen, g.samples "
    f"FROM {_KEYS} JOIN error_groups g USING (project, fingerprint, hour)"
)
_WRITE: Final = (
    "INSERT INTO error_groups AS g (project, fingerprint, hour, type, message, node_id, workflow_id, count, "
    "first_seen, last_seen, samples) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], "
    "$5::text[], $6::text[], $7::text[], $8::bigint[], $9::text[], $10::text[], $11::text[]) "
    "ON CONFLICT (project, fingerprint, hour) DO UPDATE SET type = EXCLUDED.type, message = EXCLUDED.message, "
    "node_id = EXCLUDED.node_id, workflow_id = EXCLUDED.workflow_id, count = EXCLUDED.count, "
    "first_seen = EXCLUDED.first_seen, last_seen = EXCLUDED.last_seen, samples = EXCLUDED.samples"
)
_DROP: Final = (
    f"DELETE FROM error_groups g USING {_KEYS} "
    "WHERE (g.project, g.fingerprint, g.hour) = (k.project, k.fingerprint, k.hour)"
)
_SELECT: Final = (
    "SELECT fingerprint, min(type), min(message), min(node_id), min(workflow_id), sum(count)::bigint, "
    "min(first_seen), max(last_seen), string_agg(json_build_array(project, samples::json)::text, chr(10)) "
    "FROM error_groups{where} GROUP BY fingerprint "
    "ORDER BY sum(count) DESC, max(last_seen) DESC, fingerprint LIMIT ?"
)


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


async def record_pg_failures(conn: asyncpg.Connection, added: Sequence[Failure], removed: Sequence[Failure]) -> None:
    """Add and take away failures (inside the caller's transaction): one read, one write, one delete at most."""
    deltas = failure_deltas(added, removed)
    if not deltas:
        return
    keys = list(deltas)
    stored: dict[GroupKey, tuple[Any, ...]] = {
        (row[0], row[1], row[2]): tuple(row[3:]) for row in await conn.fetch(_READ, *_columns(keys, 3))
    }
    written, dropped = group_writes(deltas, stored)
    if written:
        await conn.execute(_WRITE, *_columns(written, 11))
    if dropped:
        await conn.execute(_DROP, *_columns(dropped, 3))


async def forget_pg_purged_samples(conn: asyncpg.Connection) -> None:
    """Drop the runs of the temporary ``purge_set`` from the samples (their failures keep counting)."""
    rows = await conn.fetch(
        "SELECT project, fingerprint, hour, samples FROM error_groups g WHERE EXISTS ("
        "SELECT 1 FROM json_array_elements(g.samples::json) j WHERE j ->> 1 IN "
        "(SELECT run_id FROM purge_set WHERE space = g.project))"  # a group's runs are of its project
    )
    purged = (
        {(str(r[0]), str(r[1])) for r in await conn.fetch("SELECT run_id, space FROM purge_set")} if rows else set()
    )
    for project, fingerprint, hour, samples in rows:
        left = [pair for pair in json.loads(samples) if (pair[1], project) not in purged]
        await conn.execute(
            "UPDATE error_groups SET samples = $1 WHERE project = $2 AND fingerprint = $3 AND hour = $4",
            json.dumps(left),
            project,
            fingerprint,
            hour,
        )


async def pg_error_groups(conn: asyncpg.Connection, query: ErrorGroupQuery) -> list[dict[str, Any]]:
    """The groups matching ``query``, biggest first (then the most recent), as the API answers them; none for an
    empty range."""
    if empty_range(query):
        return []
    where, params = error_groups_where(query)
    rows = await conn.fetch(numbered(_SELECT.format(where=where)), *params, query.limit)
    return [group_json(tuple(row)) for row in rows]
