"""OTLP log records on the PostgreSQL engine: the ``otlp_logs`` table of :mod:`.._otlp_logs`, stored, linked, read.

The rows, their key and their API shape are those of :mod:`.._otlp_logs`
(``OtlpLogRow``, ``OTLP_LOG_COLUMNS``, ``linked_log_row``,
``records_json``); only the statements are this engine's. Many receivers
may link at once: a linking pass locks the pending records it reads
(``FOR UPDATE SKIP LOCKED``), so a record is copied beside its run's lines
once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from flowledger.receiver.store._namespace import one_namespace
from flowledger.receiver.store._otlp_logs import (
    LINK_BATCH_MAX,
    OTLP_LOG_COLUMNS,
    PENDING_COLUMNS,
    RECORD_COLUMNS,
    OtlpLogRow,
    linked_log_row,
    records_json,
)
from flowledger.receiver.store.postgres._dialect import text_row
from flowledger.receiver.store.postgres._logs import append_pg_logs
from flowledger.receiver.store.postgres._namespace import PG_NAMESPACES_SQL, pg_run_scope

if TYPE_CHECKING:
    import asyncpg

__all__ = ["link_pg_otlp_logs", "pg_otlp_logs", "store_pg_otlp_logs"]

_TYPES: Final = {"time_ns": "bigint", "observed_ns": "bigint", "severity_number": "integer"}
"""Column types other than text (of the table and of the arrays a batch is sent as)."""

_INSERT: Final = (
    f"INSERT INTO otlp_logs ({', '.join(OTLP_LOG_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"${i + 1}::{_TYPES.get(c, 'text')}[]" for i, c in enumerate(OTLP_LOG_COLUMNS))
    + ") ON CONFLICT (record_key) DO NOTHING RETURNING record_key, trace_id"
)
_CHUNK: Final = 1_000


async def store_pg_otlp_logs(conn: asyncpg.Connection, rows: Sequence[OtlpLogRow], *, max_records: int) -> int:
    """Store the records not stored yet and link them (inside the caller's transaction); return how many were new."""
    keys: list[str] = []
    stored = 0
    for start in range(0, len(rows), _CHUNK):
        values = [text_row(row.values()) for row in rows[start : start + _CHUNK]]
        new = await conn.fetch(_INSERT, *[list(column) for column in zip(*values, strict=True)])
        stored += len(new)
        keys.extend(str(key) for key, trace_id in new if trace_id is not None)
    if stored:
        await conn.execute(
            "DELETE FROM otlp_logs WHERE log_id <= (SELECT max(log_id) FROM otlp_logs) - $1", max_records
        )
        for start in range(0, len(keys), LINK_BATCH_MAX):
            await link_pg_otlp_logs(conn, keys=keys[start : start + LINK_BATCH_MAX])
    return stored


async def link_pg_otlp_logs(
    conn: asyncpg.Connection, *, keys: Sequence[str] = (), since: str | None = None, limit: int = LINK_BATCH_MAX
) -> int:
    """Copy records not linked yet whose span is a run's or node attempt's into ``logs``; return how many.

    ``keys`` limits the pass to those records (just stored); otherwise records received at ``since`` or later.
    Inside the caller's transaction; records another receiver is linking are skipped.
    """
    where, params = "NOT linked AND trace_id IS NOT NULL", list[Any]()
    if keys:
        where += " AND record_key = ANY($2::text[])"
        params.append(list(keys))
    elif since is not None:
        where += " AND received_at >= $2"
        params.append(since)
    pending = await conn.fetch(
        f"SELECT {PENDING_COLUMNS} FROM otlp_logs WHERE {where} ORDER BY log_id LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
        *params,
    )
    out, linked = [], []
    for project in {row[1] for row in pending}:
        mine = [row for row in pending if row[1] == project]
        links = await _links(conn, sorted({str(row[2]) for row in mine}), project)
        for row in mine:
            found = links.get((row[2], row[3]))
            if found is not None:
                out.append(linked_log_row(row, found[0], found[1], run_project=found[4]))
                linked.append(int(row[0]))
    if out:
        await append_pg_logs(conn, out)
        await conn.execute("UPDATE otlp_logs SET linked = true WHERE log_id = ANY($1::bigint[])", linked)
    return len(out)


async def _links(conn: asyncpg.Connection, trace_ids: list[str], project: str | None) -> dict[tuple[str, str], Any]:
    """(trace_id, span_id) -> (run_id, node_id, attempt, item, project) for the node attempts and runs of these
    traces."""
    links: dict[tuple[str, str], Any] = {}
    scope = " AND r.project = $2" if project is not None else ""
    params: list[Any] = [trace_ids, *([project] if project is not None else [])]
    for trace_id, run_id, span_id, node_id, attempt, item, run_project in await conn.fetch(
        "SELECT r.trace_id, r.run_id, n.span_id, n.node_id, n.attempt, n.item, r.project FROM runs r "
        "JOIN node_runs n ON n.run_id = r.run_id AND coalesce(n.project, '') = coalesce(r.project, '') "
        f"WHERE r.trace_id = ANY($1::text[]){scope}",
        *params,
    ):
        links[(str(trace_id), str(span_id))] = (run_id, node_id, attempt, item, run_project)
    for trace_id, run_id, span_id, run_project in await conn.fetch(
        "SELECT r.trace_id, r.run_id, p.body::json #>> '{data,span_id}', r.project FROM runs r "
        "JOIN ledger l ON l.event_id = r.started_event_id "
        "AND flowledger_entry_project(l.entry) = coalesce(r.project, '') JOIN payloads p ON p.seq = l.seq "
        f"WHERE r.trace_id = ANY($1::text[]){scope}",
        *params,
    ):
        if span_id:
            links.setdefault((str(trace_id), str(span_id)), (run_id, None, None, None, run_project))
    return links


async def pg_otlp_logs(
    conn: asyncpg.Connection, *, trace_id: str | None, run_id: str | None, project: str | None, limit: int
) -> list[dict[str, Any]] | None:
    """Records of one trace (or of one run's trace; or the newest) in time order, each with its run and attempt.

    None when ``run_id`` names no stored run (of the project).
    """
    if run_id is not None:
        space = one_namespace(run_id, project, await conn.fetch(PG_NAMESPACES_SQL, run_id))
        found = (
            None
            if space is None
            else await conn.fetchrow(f"SELECT trace_id FROM runs WHERE {pg_run_scope(1)}", run_id, space)
        )
        if found is None:
            return None
        if found[0] is None or (trace_id is not None and found[0] != trace_id):
            return []
        trace_id = str(found[0])
    scope = "($2::text IS NULL OR project = $2)"
    if trace_id is not None:
        rows = await conn.fetch(
            f"SELECT {RECORD_COLUMNS} FROM otlp_logs WHERE trace_id = $1 AND {scope} ORDER BY time_ns, log_id LIMIT $3",
            trace_id,
            project,
            limit,
        )
    else:
        newest = await conn.fetch(
            f"SELECT {RECORD_COLUMNS} FROM otlp_logs WHERE $1::text IS NULL AND {scope} ORDER BY log_id DESC LIMIT $3",
            None,
            project,
            limit,
        )
        rows = sorted(newest, key=lambda row: row[3])
    traces = sorted({str(row[1]) for row in rows if row[1] is not None})
    links = await _links(conn, traces, project) if traces else {}
    return records_json(rows, links, run_id)
