"""OTLP spans on the PostgreSQL engine: the ``spans`` table of :mod:`.._spans`, written once and read per trace.

The columns and the API shape are those of :mod:`.._spans` (``SPAN_COLUMNS``,
``SpanRow``, ``span_json``); a span is stored once per trace id, span id and
project, as on SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from flowledger.receiver.store._spans import SPAN_COLUMNS, SpanRow, TraceLinks, span_json
from flowledger.receiver.store.postgres._dialect import text_row

if TYPE_CHECKING:
    import asyncpg

__all__ = ["pg_trace", "store_pg_spans"]

_TYPES: Final = {"kind": "integer", "status_code": "integer", "start_ns": "bigint", "end_ns": "bigint"}
"""Column types other than text (of the table and of the arrays a batch is sent as)."""

_INSERT: Final = (
    f"INSERT INTO spans ({', '.join(SPAN_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"${i + 1}::{_TYPES.get(c, 'text')}[]" for i, c in enumerate(SPAN_COLUMNS))
    + ") ON CONFLICT (trace_id, span_id, coalesce(project, '')) DO NOTHING RETURNING 1"
)
_CHUNK: Final = 1_000


async def store_pg_spans(conn: asyncpg.Connection, spans: Sequence[SpanRow]) -> int:
    """Insert the spans not stored yet for their project (inside the caller's transaction); return how many."""
    new = 0
    for start in range(0, len(spans), _CHUNK):
        rows = [text_row(span.values()) for span in spans[start : start + _CHUNK]]
        columns = [list(column) for column in zip(*rows, strict=True)]
        new += len(await conn.fetch(_INSERT, *columns))
    return new


async def pg_trace(
    conn: asyncpg.Connection, trace_id: str, project: str | None
) -> tuple[list[dict[str, Any]], TraceLinks]:
    """The spans of one trace in start order, with the runs and node attempts they belong to."""
    scope = " AND project = $2" if project is not None else ""
    params: list[Any] = [trace_id, *([project] if project is not None else [])]
    rows = await conn.fetch(
        f"SELECT {', '.join(SPAN_COLUMNS)} FROM spans WHERE trace_id = $1{scope} ORDER BY start_ns, span_id", *params
    )
    run_rows = await conn.fetch(
        "SELECT r.run_id, sp.body::json #>> '{data,span_id}', fp.body::json #>> '{data,span_id}', "
        "coalesce(r.project, '') FROM runs r LEFT JOIN ledger s ON s.event_id = r.started_event_id "
        "AND flowledger_entry_project(s.entry) = coalesce(r.project, '') LEFT JOIN payloads sp ON sp.seq = s.seq "
        "LEFT JOIN ledger f ON f.event_id = r.finished_event_id "
        "AND flowledger_entry_project(f.entry) = coalesce(r.project, '') LEFT JOIN payloads fp ON fp.seq = f.seq "
        f"WHERE r.trace_id = $1{scope.replace('project', 'r.project')} ORDER BY r.started_at NULLS FIRST, r.run_id",
        *params,
    )
    run_ids = [str(row[0]) for row in run_rows]
    nodes: dict[str, dict[str, Any]] = {}
    for run_id, span_id, node_id, attempt, item in await conn.fetch(
        "SELECT n.run_id, n.span_id, n.node_id, n.attempt, n.item FROM node_runs n "
        "JOIN unnest($1::text[], $2::text[]) AS k (run_id, space) "
        "ON n.run_id = k.run_id AND coalesce(n.project, '') = k.space",
        run_ids,
        [str(row[3]) for row in run_rows],
    ):
        nodes[span_id] = {"run_id": run_id, "node_id": node_id, "attempt": attempt, "item": item}
    runs = {str(span): str(run_id) for run_id, *spans, _space in run_rows for span in spans if span}
    return [span_json(row) for row in rows], TraceLinks(runs=runs, nodes=nodes, run_ids=run_ids)
