"""Log lines on the PostgreSQL engine: the ``logs`` and ``log_drops`` tables of :mod:`.._logs`, written and read.

The rows, their columns and their API shape are those of :mod:`.._logs`
(``LogRow``, ``LOG_COLUMNS``, ``LOG_SELECT``, ``log_json``); only the
statements are this engine's. Each stored line is also made searchable (:mod:`._search`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from flowledger.receiver.store._logs import (
    LOG_COLUMNS,
    LOG_PAGE_MAX,
    LOG_SELECT,
    AttemptLogs,
    LogDrop,
    LogRow,
    log_json,
)
from flowledger.receiver.store._namespace import one_namespace
from flowledger.receiver.store.postgres._namespace import PG_NAMESPACES_SQL, pg_run_scope
from flowledger.receiver.store.postgres._search import log_texts, save_pg_texts

if TYPE_CHECKING:
    import asyncpg

__all__ = ["append_pg_logs", "attach_pg_logs", "pg_attempt_logs"]

_INSERT_LOGS: Final = (
    f"INSERT INTO logs ({', '.join(LOG_COLUMNS)}) VALUES ({', '.join(f'${i + 1}' for i in range(len(LOG_COLUMNS)))})"
)
_INSERT_DROPS: Final = (
    "INSERT INTO log_drops AS d (run_id, span_id, lines, bytes, project) VALUES ($1, $2, $3, $4, $5) "
    "ON CONFLICT (run_id, (coalesce(project, '')), span_id) "
    "DO UPDATE SET lines = d.lines + EXCLUDED.lines, bytes = d.bytes + EXCLUDED.bytes"
)
_ONE_RUN: Final = pg_run_scope(1)
_INLINE_SQL: Final = (
    "SELECT * FROM (SELECT id, span_id, ts, level, level_name, logger, message, exception, trace_id, "
    "log_span_id, repeats, source, attributes, row_number() OVER (PARTITION BY span_id ORDER BY id) AS nth "
    f"FROM logs WHERE {_ONE_RUN}) l WHERE $3::bigint < 0 OR nth <= $3 ORDER BY id"
)


def _values(row: LogRow) -> list[Any]:
    return [
        str(value) if column == "source" else value for column, value in zip(LOG_COLUMNS, row.values(), strict=True)
    ]


async def append_pg_logs(conn: asyncpg.Connection, rows: Sequence[LogRow], drops: Sequence[LogDrop] = ()) -> None:
    """Insert log rows and add drop counts (inside the caller's transaction)."""
    if rows:
        await conn.executemany(_INSERT_LOGS, [_values(row) for row in rows])
        await save_pg_texts(conn, log_texts(rows))  # every stored line is searchable, as SQLite's trigger does
    if drops:
        await conn.executemany(_INSERT_DROPS, [(d.run_id, d.span_id or "", d.lines, d.bytes, d.project) for d in drops])


async def attach_pg_logs(
    conn: asyncpg.Connection, run_id: str, space: str, nodes: list[dict[str, Any]], inline: int | None
) -> None:
    """Give every attempt its ``logs`` (at most ``inline``; None: all), ``logs_url`` and ``logs_dropped``."""
    lines: dict[str | None, list[dict[str, Any]]] = {}
    more: set[str | None] = set()
    for row in await conn.fetch(_INLINE_SQL, run_id, space, -1 if inline is None else inline + 1):
        span_id = row[1]
        if inline is not None and int(row[13]) > inline:
            more.add(span_id)
            continue
        lines.setdefault(span_id, []).append(log_json(row))
    drops = {
        str(row[0]): {"lines": int(row[1]), "bytes": int(row[2])}
        for row in await conn.fetch(f"SELECT span_id, lines, bytes FROM log_drops WHERE {_ONE_RUN}", run_id, space)
    }
    for node in nodes:
        span_id = node["span_id"]
        node["logs"] = lines.get(span_id, [])
        node["logs_url"] = f"/api/runs/{run_id}/attempts/{span_id}/logs" if span_id in more else None
        node["logs_dropped"] = drops.get(span_id)


async def pg_attempt_logs(
    conn: asyncpg.Connection,
    run_id: str,
    span_id: str | None,
    *,
    project: str | None,
    min_level: int,
    after_id: int,
    limit: int,
) -> AttemptLogs | None:
    """One attempt's lines in arrival order, a page at a time; None for an unknown (or another project's) run."""
    limit = max(1, min(limit, LOG_PAGE_MAX))
    space = one_namespace(run_id, project, await conn.fetch(PG_NAMESPACES_SQL, run_id))
    if space is None:
        return None
    span = "span_id = $6" if span_id is not None else "span_id IS NULL"
    params: list[Any] = [run_id, space, after_id, min_level, limit + 1, *([span_id] if span_id is not None else [])]
    rows = await conn.fetch(
        f"{LOG_SELECT} WHERE {_ONE_RUN} AND {span} AND id > $3 AND level >= $4 ORDER BY id LIMIT $5", *params
    )
    drops = await conn.fetchrow(
        f"SELECT lines, bytes FROM log_drops WHERE {_ONE_RUN} AND span_id = $3", run_id, space, span_id or ""
    )
    page = AttemptLogs(lines=[log_json(row) for row in rows[:limit]], more=len(rows) > limit)
    if drops is not None:
        page.dropped_lines, page.dropped_bytes = int(drops[0]), int(drops[1])
    return page
