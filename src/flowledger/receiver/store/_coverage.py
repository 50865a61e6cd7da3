"""Coverage: runs and producer sessions whose core events are missing, counted with indexed queries.

Each kind is one count and one sample query, both served by an index whatever
the ledger's size: unfinished runs by ``runs_by_status`` (running and stuck
runs only), attempts still running by the partial index ``node_runs_running``,
runs without a ``run_started`` by ``runs_without_start``, producers with gaps by
``producers_with_gaps`` (all added by the store's coverage migration). Samples are
the oldest :data:`~._integrity.COVERAGE_SAMPLES` of each kind.

A producer session is one SDK process: its events carry ``producer_seq``
0, 1, 2... A session whose highest number is at least its event count
is missing some. ``--since`` and ``--workflow`` place a session by its
newest event (and that event's run).

The kinds, scopes, samples and report are shared by the engines; each gives
its spelling of the queries as a :class:`CoverageSql` (this module's are
:data:`SQLITE_COVERAGE`).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiosqlite

from flowledger._wire import NodeStatus, RunStatus
from flowledger.receiver.store._entry import LEDGER_PROJECT
from flowledger.receiver.store._integrity import (
    COVERAGE_SAMPLES,
    DEADLINE_GRACE_S,
    CoverageKind,
    CoverageQuery,
    CoverageReport,
    KindTally,
)
from flowledger.receiver.store._time import epoch_s, ts_from_epoch_s

__all__ = [
    "SQLITE_COVERAGE",
    "TERMINAL_STATUSES",
    "UNFINISHED_STATUSES",
    "CoverageSql",
    "Fetch",
    "coverage",
    "coverage_with",
]

_SECONDS_PER_DAY: Final = 86_400.0
UNFINISHED_STATUSES: Final = f"('{RunStatus.RUNNING.value}', '{RunStatus.STUCK.value}')"
TERMINAL_STATUSES: Final = f"('{RunStatus.SUCCEEDED.value}', '{RunStatus.FAILED.value}', '{RunStatus.ABORTED.value}')"

_OVERDUE_FROM: Final = f"""
FROM runs r LEFT JOIN payloads p ON p.seq = r.input_seq
WHERE r.status IN {UNFINISHED_STATUSES} {{scope}} AND (
    (r.last_seen_at < :silent_cutoff
     AND (julianday(:now) - julianday(r.last_seen_at)) * {_SECONDS_PER_DAY}
         > :heartbeats * coalesce(r.heartbeat_interval_s, 0)
     -- and not heard from lately by the receiver's clock either (the sweeper's rule: a producer
     -- whose clock is behind is not taken for silent)
     AND coalesce((julianday(:now) - julianday(
             (SELECT max(l.received_at) FROM ledger l INDEXED BY ledger_by_run
              WHERE l.run_id = r.run_id AND {LEDGER_PROJECT.format("l.")} = ifnull(r.project, ''))))
             * {_SECONDS_PER_DAY}, 1e18)
         > max(:stuck_after_s, :heartbeats * coalesce(r.heartbeat_interval_s, 0)))
    OR (r.started_at IS NOT NULL
        AND (julianday(:now) - julianday(r.started_at)) * {_SECONDS_PER_DAY}
            > json_extract(p.body, '$.data.limits.deadline_s') + :grace)
)"""
_NO_START_FROM: Final = "FROM runs r WHERE r.started_event_id IS NULL {scope}"
# CROSS JOIN keeps the few running attempts outside: otherwise SQLite walks every finished run.
_NODE_FROM: Final = f"""
FROM node_runs n INDEXED BY node_runs_running CROSS JOIN runs r
    ON r.run_id = n.run_id AND ifnull(r.project, '') = ifnull(n.project, '')
WHERE n.status = '{NodeStatus.RUNNING.value}' AND r.status IN {TERMINAL_STATUSES} {{scope}}"""
_GAP_FROM: Final = "FROM producers pr {join} WHERE pr.max_seq >= pr.events {scope}"


@dataclass(frozen=True, slots=True)
class CoverageSql:
    """One engine's spelling of the coverage queries (``:name`` parameters; ``{scope}``, ``{join}`` filled in)."""

    overdue_from: str
    """Unfinished runs silent for too long or past their deadline (``{scope}``)."""
    deadline: str
    """The deadline of a run of ``overdue_from`` (``p`` its run_started payload)."""
    no_start_from: str
    """Runs without a ``run_started`` (``{scope}``)."""
    node_from: str
    """Attempts still running in a finished run (``{scope}``)."""
    gap_from: str
    """Producer sessions with gaps (``{join}``, ``{scope}``)."""
    lost: str
    """The events those sessions are missing, summed over ``gap_from``."""


SQLITE_COVERAGE: Final = CoverageSql(
    overdue_from=_OVERDUE_FROM,
    deadline="json_extract(p.body, '$.data.limits.deadline_s')",
    no_start_from=_NO_START_FROM,
    node_from=_NODE_FROM,
    gap_from=_GAP_FROM,
    # max_seq - events + 1 in this order: max_seq may be 2**63 - 1, and SQLite integers stop there.
    lost="coalesce(sum(min(pr.max_seq - pr.events + 1, pr.events)), 0)",
)
"""The SQLite engine's coverage queries."""

Fetch = Callable[[str, dict[str, Any]], Awaitable[Sequence[Sequence[Any]]]]
"""Runs one query with ``:name`` parameters inside the caller's transaction and returns its rows."""


def _run_scope(query: CoverageQuery, params: dict[str, Any], *, started: str = "r.started_at") -> str:
    clauses = []
    if query.since is not None:
        clauses.append(f"coalesce({started}, r.last_seen_at) >= :since")
        params["since"] = query.since
    if query.workflow_id is not None:
        clauses.append("r.workflow_id = :workflow_id")
        params["workflow_id"] = query.workflow_id
    if query.project is not None:
        clauses.append("r.project = :project")
        params["project"] = query.project
    return "".join(f" AND {clause}" for clause in clauses)


def _gap_scope(query: CoverageQuery, params: dict[str, Any]) -> tuple[str, str]:
    """The producers' join (to place a session by its newest run) and filter."""
    clauses = []
    join = ""
    if query.since is not None:
        clauses.append("pr.last_ts >= :since")
        params["since"] = query.since
    if query.workflow_id is not None:
        join = "JOIN runs r ON r.run_id = pr.last_run_id AND coalesce(r.project, '') = coalesce(pr.project, '')"
        clauses.append("r.workflow_id = :workflow_id")
        params["workflow_id"] = query.workflow_id
    if query.project is not None:
        clauses.append("pr.project = :project")
        params["project"] = query.project
    return join, "".join(f" AND {clause}" for clause in clauses)


async def _tally(
    fetch: Fetch, source: str, columns: str, order: str, params: dict[str, Any]
) -> tuple[int, list[Sequence[Any]]]:
    counted = await fetch(f"SELECT count(*) {source}", params)
    count = int(next(iter(counted))[0])
    if not count:
        return 0, []
    rows = await fetch(f"SELECT {columns} {source} ORDER BY {order} LIMIT {COVERAGE_SAMPLES}", params)
    return count, list(rows)


async def coverage(conn: aiosqlite.Connection, query: CoverageQuery) -> CoverageReport:
    """Count and sample every kind of missing core event (read in the caller's transaction)."""

    async def fetch(sql: str, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
        return list(await conn.execute_fetchall(sql, params))

    return await coverage_with(fetch, SQLITE_COVERAGE, query)


def _number(value: Any) -> Any:
    """A JSON number read as JSON text (PostgreSQL's ``#>>``) or already a number (SQLite's ``json_extract``)."""
    return json.loads(value) if isinstance(value, str) else value


async def coverage_with(fetch: Fetch, sql: CoverageSql, query: CoverageQuery) -> CoverageReport:
    """Count and sample every kind of missing core event with one engine's queries."""
    report = CoverageReport(checked_at=query.now)
    silent_cutoff = ts_from_epoch_s(epoch_s(query.now) - query.stuck_after_s)

    params: dict[str, Any] = {
        "now": query.now,
        "silent_cutoff": silent_cutoff,
        "heartbeats": query.heartbeats,
        "stuck_after_s": query.stuck_after_s,
        "grace": DEADLINE_GRACE_S,
    }
    source = sql.overdue_from.format(scope=_run_scope(query, params))
    count, rows = await _tally(
        fetch,
        source,
        f"r.run_id, r.workflow_id, r.status, r.started_at, r.last_seen_at, {sql.deadline}",
        "r.last_seen_at, r.run_id",
        params,
    )
    report.kinds[CoverageKind.RUN_FINISHED_MISSING] = KindTally(
        count,
        [
            {
                "run_id": run_id,
                "workflow_id": workflow_id,
                "status": status,
                "started_at": started_at,
                "last_seen_at": last_seen_at,
                "deadline_s": _number(deadline_s),
            }
            for run_id, workflow_id, status, started_at, last_seen_at, deadline_s in rows
        ],
    )

    params = {}
    source = sql.no_start_from.format(scope=_run_scope(query, params))
    count, rows = await _tally(
        fetch, source, "r.run_id, r.workflow_id, r.status, r.last_seen_at", "r.started_at, r.run_id", params
    )
    report.kinds[CoverageKind.RUN_STARTED_MISSING] = KindTally(
        count,
        [
            {"run_id": run_id, "workflow_id": workflow_id, "status": status, "last_seen_at": last_seen_at}
            for run_id, workflow_id, status, last_seen_at in rows
        ],
    )

    params = {}
    source = sql.node_from.format(scope=_run_scope(query, params))
    count, rows = await _tally(
        fetch,
        source,
        "n.run_id, n.span_id, n.node_id, n.attempt, n.started_at, r.status",
        "n.run_id, n.span_id",
        params,
    )
    report.kinds[CoverageKind.NODE_FINISHED_MISSING] = KindTally(
        count,
        [
            {
                "run_id": run_id,
                "span_id": span_id,
                "node_id": node_id,
                "attempt": attempt,
                "started_at": started_at,
                "run_status": run_status,
            }
            for run_id, span_id, node_id, attempt, started_at, run_status in rows
        ],
    )

    params = {}
    join, scope = _gap_scope(query, params)
    source = sql.gap_from.format(join=join, scope=scope)
    lost = await fetch(f"SELECT {sql.lost} {source}", params)
    report.events_missing = int(next(iter(lost))[0])
    count, rows = await _tally(
        fetch,
        source,
        "pr.producer_id, pr.events, pr.max_seq, pr.last_ts, pr.last_run_id",
        "pr.last_ts, pr.producer_id",
        params,
    )
    report.kinds[CoverageKind.PRODUCER_SEQ_GAP] = KindTally(
        count,
        [
            {
                "producer_id": producer_id,
                "events": events,
                "max_seq": max_seq,
                "missing": min(max_seq - events + 1, events),
                "last_ts": last_ts,
                "last_run_id": last_run_id,
            }
            for producer_id, events, max_seq, last_ts, last_run_id in rows
        ],
    )
    return report
