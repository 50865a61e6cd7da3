"""Purging runs from a PostgreSQL store: payloads, projections, spans and OTLP logs go; entries and totals stay.

As :mod:`.._purge` does on SQLite, inside the caller's write transaction (which
holds the chain's lock): the selected runs are collected in a temporary table,
their figures added to ``purged_totals`` (so the daily aggregates stay right),
their runs leave the error groups' samples (their failures keep counting, as
their statistics do), then the payloads of their ledger entries, their spans and OTLP log records
(their project's only), node attempts, log lines, searchable text and attributes, run rows and the blobs
nothing refers to any more are deleted; the caller appends the purge entry. The daily totals read
the SQLite engine's :data:`~.._purge.DAILY_TOTALS_SQL` (live runs added to
``purged_totals``).
"""

from __future__ import annotations

from typing import Final

import asyncpg

from flowledger.receiver.store._namespace import ambiguous_run
from flowledger.receiver.store._protocol import PurgeSelection
from flowledger.receiver.store._purge import PurgeWork, purge_scope, purge_where
from flowledger.receiver.store.postgres._dialect import numbered
from flowledger.receiver.store.postgres._error_groups import forget_pg_purged_samples

__all__ = ["pg_purge_runs"]

_ROLL_UP: Final = """
INSERT INTO purged_totals AS t
    (workflow_id, project, day, status, runs, cost_usd, duration_ms_sum, durations, duration_ms_max)
SELECT coalesce(r.workflow_id, ''), coalesce(r.project, ''), coalesce(substr(r.started_at, 1, 10), ''), r.status,
       count(*), coalesce(sum(r.cost_usd), 0), coalesce(sum(r.duration_ms), 0), count(r.duration_ms), max(r.duration_ms)
FROM runs r WHERE (r.run_id, coalesce(r.project, '')) IN (SELECT run_id, space FROM purge_set) GROUP BY 1, 2, 3, 4
ON CONFLICT (workflow_id, project, day, status) DO UPDATE SET
    runs = t.runs + excluded.runs,
    cost_usd = t.cost_usd + excluded.cost_usd,
    duration_ms_sum = t.duration_ms_sum + excluded.duration_ms_sum,
    durations = t.durations + excluded.durations,
    duration_ms_max = greatest(t.duration_ms_max, excluded.duration_ms_max)
"""
"""The SQLite engine's roll-up in PostgreSQL's spelling (``greatest`` ignores NULLs as SQLite's pair of
``coalesce``-d ``max`` does)."""
_IN_SET: Final = "IN (SELECT run_id, space FROM purge_set)"
"""After a run's id and namespace as a row value: one of the runs to purge (a run is its project and its id)."""
_BY_TRACE: Final = (
    "trace_id IN (SELECT r.trace_id FROM runs r WHERE (r.run_id, coalesce(r.project, '')) {in_set} "
    "AND r.trace_id IS NOT NULL) AND (project IS NULL OR project IN (SELECT r.project FROM runs r "
    "WHERE (r.run_id, coalesce(r.project, '')) {in_set} AND r.trace_id = {table}.trace_id))"
)
_THE_RUN: Final = "(run_id, coalesce(project, ''))"
_KEEP_NEWEST: Final = (
    " AND (run_id, coalesce(project, '')) NOT IN (SELECT run_id, coalesce(project, '') FROM runs "
    "WHERE workflow_id = ?{scope} ORDER BY started_at DESC NULLS LAST, run_id DESC LIMIT ?)"
)
"""This engine's spelling of :func:`~.._purge.purge_where`'s ``keep_newest`` (runs without a start time last, as
SQLite sorts them)."""


async def _select(conn: asyncpg.Connection, selection: PurgeSelection) -> None:
    """Fill the temporary ``purge_set`` with the selected run ids."""
    await conn.execute(
        'CREATE TEMP TABLE purge_set (run_id text COLLATE "C", space text COLLATE "C", PRIMARY KEY (run_id, space)) '
        "ON COMMIT DROP"
    )
    scope, params = purge_scope(selection)
    if selection.run_ids:
        ids = list(dict.fromkeys(selection.run_ids))
        await conn.execute(
            numbered(
                f"INSERT INTO purge_set SELECT run_id, coalesce(project, '') FROM runs "
                f"WHERE run_id = ANY(?::text[]){scope}"
            ),
            ids,
            *params,
        )
        if selection.project is None:  # one id of several projects: never all of them by omission
            shared = await conn.fetchval("SELECT run_id FROM purge_set GROUP BY run_id HAVING count(*) > 1 LIMIT 1")
            if shared is not None:
                raise ambiguous_run(str(shared))
        return
    selected = purge_where(selection, keep_newest=_KEEP_NEWEST)
    if selected is None:
        return
    where, where_params = selected
    limit = "" if selection.limit is None else f" LIMIT {int(selection.limit)}"
    await conn.execute(
        numbered(
            f"INSERT INTO purge_set SELECT run_id, coalesce(project, '') FROM runs WHERE {where} "
            f"ORDER BY started_at NULLS FIRST, run_id{limit}"
        ),
        *where_params,
    )


async def pg_purge_runs(conn: asyncpg.Connection, selection: PurgeSelection, *, now: str) -> PurgeWork:
    """Erase the selected runs (inside the caller's transaction); see the module docstring."""
    await _select(conn, selection)
    runs = [str(row[0]) for row in await conn.fetch("SELECT DISTINCT run_id FROM purge_set ORDER BY run_id")]
    if not runs:
        return PurgeWork(runs=[], events=0, payload={})
    await conn.execute(_ROLL_UP)
    await forget_pg_purged_samples(conn)  # their failures keep counting; samples name only runs still stored
    status = await conn.execute(
        "DELETE FROM payloads WHERE seq IN (SELECT l.seq FROM ledger l "
        f"WHERE (l.run_id, flowledger_entry_project(l.entry)) {_IN_SET})"
    )
    events = int(status.split()[-1])
    for table in ("spans", "otlp_logs"):  # the OTLP log records of the run's trace by the same rule as its spans
        await conn.execute(f"DELETE FROM {table} WHERE {_BY_TRACE.format(in_set=_IN_SET, table=table)}")
    blobs = [
        row[0]
        for row in await conn.fetch(
            f"SELECT output_sha256 FROM node_runs WHERE {_THE_RUN} {_IN_SET} AND output_sha256 IS NOT NULL "
            f"UNION SELECT input_sha256 FROM runs WHERE {_THE_RUN} {_IN_SET} AND input_sha256 IS NOT NULL"
        )
    ]
    for table in ("node_runs", "logs", "log_drops", "search_text", "run_attributes", "runs"):
        await conn.execute(f"DELETE FROM {table} WHERE {_THE_RUN} {_IN_SET}")
    if blobs:
        await conn.execute(
            "DELETE FROM blobs WHERE sha256 = ANY($1::text[]) "
            "AND NOT EXISTS (SELECT 1 FROM node_runs n WHERE n.output_sha256 = blobs.sha256) "
            "AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.input_sha256 = blobs.sha256)",
            blobs,
        )
    scope = {
        key: value
        for key, value in (
            ("run_ids", list(selection.run_ids) or None),
            ("workflow_id", selection.workflow_id),
            ("before", selection.before),
            ("keep_newest", selection.keep_newest),
            ("project", selection.project),
        )
        if value is not None
    }
    payload = {"by": selection.by, "at": now, "selection": scope, "events": events, "runs": runs}
    return PurgeWork(runs=runs, events=events, payload=payload)
