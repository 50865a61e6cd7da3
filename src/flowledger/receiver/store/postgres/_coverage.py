"""Coverage on the PostgreSQL engine: the queries of :class:`~.._coverage.CoverageSql` in its spelling.

The kinds, the scopes, the samples and the report are those of
:mod:`.._coverage`; times are compared as ``timestamptz`` (the stored text
timestamps cast), the deadline read with ``#>>``, and each kind is served by
a partial index of this engine's coverage migration, as on SQLite.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from flowledger._wire import NodeStatus
from flowledger.receiver.store._coverage import (
    TERMINAL_STATUSES,
    UNFINISHED_STATUSES,
    CoverageSql,
    coverage_with,
)
from flowledger.receiver.store._integrity import CoverageQuery, CoverageReport
from flowledger.receiver.store.postgres._dialect import named

if TYPE_CHECKING:
    import asyncpg

__all__ = ["pg_coverage"]


def _age(ts: str) -> str:
    """Seconds from ``ts`` (a stored text timestamp) to ``:now``."""
    return f"extract(epoch FROM (:now::text::timestamptz - ({ts})::timestamptz))"


_LAST_HEARD: Final = (
    "(SELECT max(l.received_at) FROM ledger l "
    "WHERE l.run_id = r.run_id AND flowledger_entry_project(l.entry) = coalesce(r.project, ''))"
)
_HEARTBEATS: Final = ":heartbeats::float8 * coalesce(r.heartbeat_interval_s, 0)"

PG_COVERAGE: Final = CoverageSql(
    overdue_from=f"""
FROM runs r LEFT JOIN payloads p ON p.seq = r.input_seq
WHERE r.status IN {UNFINISHED_STATUSES} {{scope}} AND (
    (r.last_seen_at < :silent_cutoff::text
     AND {_age("r.last_seen_at")} > {_HEARTBEATS}
     AND coalesce({_age(_LAST_HEARD)}, 1e18)
         > greatest(:stuck_after_s::float8, {_HEARTBEATS}))
    OR (r.started_at IS NOT NULL
        AND {_age("r.started_at")} > (p.body::json #>> '{{{{data,limits,deadline_s}}}}')::float8 + :grace::float8)
)""",
    deadline="p.body::json #>> '{data,limits,deadline_s}'",
    no_start_from="FROM runs r WHERE r.started_event_id IS NULL {scope}",
    node_from=(
        "FROM node_runs n JOIN runs r ON r.run_id = n.run_id AND coalesce(r.project, '') = coalesce(n.project, '') "
        f"WHERE n.status = '{NodeStatus.RUNNING.value}' AND r.status IN {TERMINAL_STATUSES} {{scope}}"
    ),
    gap_from="FROM producers pr {join} WHERE pr.max_seq >= pr.events {scope}",
    lost="coalesce(sum(least(pr.max_seq - pr.events + 1, pr.events)), 0)",
)
"""This engine's coverage queries."""


async def pg_coverage(conn: asyncpg.Connection, query: CoverageQuery) -> CoverageReport:
    """Count and sample every kind of missing core event (read in the caller's transaction)."""

    async def fetch(sql: str, params: dict[str, Any]) -> Sequence[Sequence[Any]]:
        text, values = named(sql, params)
        return list(await conn.fetch(text, *values))

    return await coverage_with(fetch, PG_COVERAGE, query)
