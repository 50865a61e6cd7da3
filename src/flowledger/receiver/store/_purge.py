"""Purging runs from an SQLite store: payloads, projections and spans go; entries and totals stay.

:func:`purge_runs` runs inside the caller's write transaction. It collects the
selected runs in a temporary table, adds their figures to ``purged_totals``
(so the daily aggregates stay right), deletes the payloads of their ledger
entries (found through the ``ledger_by_run`` index), their spans (their
project's only), node attempts, their log lines, searchable text and
attributes, and run rows (the ``run_counts`` triggers on ``runs`` take them
out of the kept counts), and returns the purge entry's payload for the caller
to append to the chain. With ``PRAGMA secure_delete`` on (the store's write
connection sets it) the deleted bytes are overwritten, and an incremental
vacuum afterwards hands the freed pages back to the file system.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import aiosqlite

from flowledger._wire import RunStatus
from flowledger.receiver.store._blobs import collect_purged_blobs, drop_unreferenced_blobs
from flowledger.receiver.store._entry import LEDGER_PROJECT
from flowledger.receiver.store._error_groups import forget_purged_samples
from flowledger.receiver.store._namespace import ambiguous_run
from flowledger.receiver.store._protocol import DailyTotal, PurgeSelection

__all__ = ["DAILY_TOTALS_SQL", "PurgeWork", "daily_total", "purge_runs", "purge_scope", "purge_where"]

_LOOKUP_CHUNK: Final = 500
_PURGED: Final = "(run_id, ifnull(project, '')) IN (SELECT run_id, space FROM temp.purge_set)"
"""The rows of the runs to purge (a run is its id and its project, '' for none)."""
_PURGED_R: Final = _PURGED.replace("run_id, ifnull(project", "r.run_id, ifnull(r.project", 1)

_ROLL_UP: Final = """
INSERT INTO purged_totals
    (workflow_id, project, day, status, runs, cost_usd, duration_ms_sum, durations, duration_ms_max)
SELECT coalesce(r.workflow_id, ''), coalesce(r.project, ''), coalesce(substr(r.started_at, 1, 10), ''), r.status,
       count(*), coalesce(sum(r.cost_usd), 0), coalesce(sum(r.duration_ms), 0), count(r.duration_ms), max(r.duration_ms)
FROM runs r WHERE (r.run_id, ifnull(r.project, '')) IN (SELECT run_id, space FROM temp.purge_set) GROUP BY 1, 2, 3, 4
ON CONFLICT (workflow_id, project, day, status) DO UPDATE SET
    runs = runs + excluded.runs,
    cost_usd = cost_usd + excluded.cost_usd,
    duration_ms_sum = duration_ms_sum + excluded.duration_ms_sum,
    durations = durations + excluded.durations,
    duration_ms_max = max(
        coalesce(duration_ms_max, excluded.duration_ms_max), coalesce(excluded.duration_ms_max, duration_ms_max)
    )
"""

DAILY_TOTALS_SQL: Final = """
SELECT workflow_id, project, day, status, sum(runs), sum(cost_usd), sum(duration_ms_sum), sum(durations),
       max(duration_ms_max)
FROM (
    SELECT coalesce(workflow_id, '') AS workflow_id, coalesce(project, '') AS project,
           coalesce(substr(started_at, 1, 10), '') AS day, status, count(*) AS runs,
           coalesce(sum(cost_usd), 0) AS cost_usd, coalesce(sum(duration_ms), 0) AS duration_ms_sum,
           count(duration_ms) AS durations, max(duration_ms) AS duration_ms_max
    FROM runs GROUP BY 1, 2, 3, 4
    UNION ALL
    SELECT workflow_id, project, day, status, runs, cost_usd, duration_ms_sum, durations, duration_ms_max
    FROM purged_totals
) AS totals
{where}
GROUP BY 1, 2, 3, 4 ORDER BY day, workflow_id, project, status
"""
"""Live runs grouped like ``purged_totals``, added to it (``{where}``: filters on the outer columns)."""


@dataclass(frozen=True, slots=True)
class PurgeWork:
    """What :func:`purge_runs` erased, and the payload of the purge entry to append."""

    runs: list[str]
    events: int
    payload: dict[str, Any]


def daily_total(row: Any) -> DailyTotal:
    """A :class:`DailyTotal` from a row of :data:`DAILY_TOTALS_SQL`."""
    workflow_id, project, day, status, runs, cost, duration_sum, durations, duration_max = row
    return DailyTotal(
        workflow_id=str(workflow_id),
        project=str(project),
        day=str(day),
        status=str(status),
        runs=int(runs),
        cost_usd=float(cost),
        duration_ms_sum=float(duration_sum),
        durations=int(durations),
        duration_ms_max=None if duration_max is None else float(duration_max),
    )


_KEEP_NEWEST: Final = (
    " AND rowid NOT IN (SELECT rowid FROM runs WHERE workflow_id = ?{scope} "
    "ORDER BY started_at DESC, run_id DESC LIMIT ?)"
)
"""SQLite's spelling of :func:`purge_where`'s ``keep_newest``."""
_SHARED_ID_SQL: Final = "SELECT run_id FROM temp.purge_set GROUP BY run_id HAVING count(*) > 1 LIMIT 1"
"""A selected run id used in more than one project, if any."""


async def _select(conn: aiosqlite.Connection, selection: PurgeSelection) -> None:
    """Fill ``temp.purge_set`` with the selected run ids."""
    await conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS purge_set (run_id TEXT, space TEXT, PRIMARY KEY (run_id, space)) WITHOUT ROWID"
    )
    await conn.execute("DELETE FROM temp.purge_set")
    scope, params = purge_scope(selection)
    limit = "" if selection.limit is None else f" LIMIT {int(selection.limit)}"
    if selection.run_ids:
        ids = list(dict.fromkeys(selection.run_ids))
        for start in range(0, len(ids), _LOOKUP_CHUNK):
            part = ids[start : start + _LOOKUP_CHUNK]
            await conn.execute(
                f"INSERT OR IGNORE INTO temp.purge_set SELECT run_id, ifnull(project, '') FROM runs "
                f"WHERE run_id IN ({', '.join('?' * len(part))}){scope}",
                [*part, *params],
            )
        if selection.project is None:  # one id of several projects: never all of them by omission
            shared = await conn.execute_fetchall(_SHARED_ID_SQL)
            if shared:
                raise ambiguous_run(str(next(iter(shared))[0]))
        return
    selected = purge_where(selection, keep_newest=_KEEP_NEWEST)
    if selected is None:
        return
    where, where_params = selected
    await conn.execute(
        f"INSERT INTO temp.purge_set SELECT run_id, ifnull(project, '') FROM runs WHERE {where} "
        f"ORDER BY started_at, run_id{limit}",
        where_params,
    )


def purge_scope(selection: PurgeSelection) -> tuple[str, list[Any]]:
    """The ``AND`` conditions (``?`` parameters) on ``runs`` every selection has: its project ('' the runs
    without one), finished runs only."""
    clauses, params = "", []
    if selection.project == "":
        clauses += " AND project IS NULL"
    elif selection.project is not None:
        clauses += " AND project = ?"
        params.append(selection.project)
    if selection.finished_only:
        clauses += f" AND status NOT IN ('{RunStatus.RUNNING.value}', '{RunStatus.STUCK.value}')"
    return clauses, params


def purge_where(selection: PurgeSelection, *, keep_newest: str) -> tuple[str, list[Any]] | None:
    """The condition (``?`` parameters) on ``runs`` of a selection by workflow or start time, the same on every
    engine; None when it names neither (a selection is never "everything" by omission).

    ``keep_newest`` is the engine's ``AND`` condition leaving out the newest runs of the workflow (``{scope}``
    takes :func:`purge_scope`'s conditions; its parameters are the workflow id, the scope's, and how many).
    """
    if selection.workflow_id is None and selection.before is None:
        return None
    scope, params = purge_scope(selection)
    where, where_params = "TRUE" + scope, list(params)
    if selection.workflow_id is not None:
        where += " AND workflow_id = ?"
        where_params.append(selection.workflow_id)
    if selection.before is not None:
        where += " AND started_at < ?"
        where_params.append(selection.before)
    if selection.keep_newest is not None and selection.workflow_id is not None:
        where += keep_newest.format(scope=scope)
        where_params += [selection.workflow_id, *params, selection.keep_newest]
    return where, where_params


async def purge_runs(conn: aiosqlite.Connection, selection: PurgeSelection, *, now: str) -> PurgeWork:
    """Erase the selected runs (inside the caller's transaction); see the module docstring."""
    await _select(conn, selection)
    runs = [
        str(row[0]) for row in await conn.execute_fetchall("SELECT DISTINCT run_id FROM temp.purge_set ORDER BY run_id")
    ]
    if not runs:
        return PurgeWork(runs=[], events=0, payload={})
    await conn.execute(_ROLL_UP)
    await forget_purged_samples(conn)  # their failures keep counting; samples name only runs still stored
    before = conn.total_changes
    await conn.execute(
        "DELETE FROM payloads WHERE seq IN (SELECT l.seq FROM ledger l JOIN temp.purge_set s "
        f"ON l.run_id = s.run_id AND {LEDGER_PROJECT.format('l.')} = s.space)"
    )
    events = conn.total_changes - before
    # Spans are stored per (trace, span, project): only the run's project's spans (and spans sent
    # without an API key, which belong to no project) go; another project's spans of that trace stay.
    await conn.execute(
        "DELETE FROM spans WHERE trace_id IN (SELECT r.trace_id FROM runs r "
        f"WHERE {_PURGED_R} AND r.trace_id IS NOT NULL) "
        "AND (project IS NULL OR project IN (SELECT r.project FROM runs r "
        f"WHERE {_PURGED_R} AND r.trace_id = spans.trace_id))"
    )
    await collect_purged_blobs(conn)

    await conn.execute(  # OTLP log records of the run's trace, by the same rule as its spans
        "DELETE FROM otlp_logs WHERE trace_id IN (SELECT r.trace_id FROM runs r "
        f"WHERE {_PURGED_R} AND r.trace_id IS NOT NULL) "
        "AND (project IS NULL OR project IN (SELECT r.project FROM runs r "
        f"WHERE {_PURGED_R} AND r.trace_id = otlp_logs.trace_id))"
    )
    await conn.execute(
        "DELETE FROM node_runs WHERE (run_id, ifnull(project, '')) IN (SELECT run_id, space FROM temp.purge_set)"
    )
    await conn.execute(
        "DELETE FROM logs WHERE (run_id, ifnull(project, '')) IN (SELECT run_id, space FROM temp.purge_set)"
    )
    await conn.execute(
        "DELETE FROM log_drops WHERE (run_id, ifnull(project, '')) IN (SELECT run_id, space FROM temp.purge_set)"
    )
    cursor = await conn.execute(
        "DELETE FROM search_text WHERE (run_id, ifnull(project, '')) IN (SELECT run_id, space FROM temp.purge_set)"
    )
    if cursor.rowcount:
        # FTS5 deletes leave tombstones in its index segments until they merge: merge them now, so no
        # token of the purged text stays in the file (SQLite before 3.44 has no secure-delete for FTS5).
        await conn.execute("INSERT INTO search_fts (search_fts) VALUES ('optimize')")
    await conn.execute(
        "DELETE FROM run_attributes WHERE (run_id, ifnull(project, '')) IN (SELECT run_id, space FROM temp.purge_set)"
    )
    await conn.execute(
        "DELETE FROM runs WHERE (run_id, ifnull(project, '')) IN (SELECT run_id, space FROM temp.purge_set)"
    )
    await drop_unreferenced_blobs(conn)
    await conn.execute("DELETE FROM temp.purge_set")
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
