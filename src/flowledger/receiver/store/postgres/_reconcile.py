"""Reconciliation on the PostgreSQL engine: the statements of :class:`~.._reconcile.ReconcileIO` in its spelling.

The fold, the comparison, the walk over the run ids and the report are
those of :mod:`.._reconcile`; a check reads each chunk on one repeatable-read
snapshot, a repair rewrites the drifted runs under the chain's lock (so no
append folds them meanwhile). Given a project (an API key's), every statement
reads that project's rows only, by the namespace each run-id index holds
second (the ledger's ``flowledger_entry_project(entry)``, the projections'
``coalesce(project, '')``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

from flowledger.receiver.store._entry import PURGE_KIND
from flowledger.receiver.store._fold import NODE_COLUMNS, RUN_COLUMNS, NodeState, RunState
from flowledger.receiver.store._namespace import run_key
from flowledger.receiver.store._projector import node_from_row
from flowledger.receiver.store.postgres._projector import run_from_record, save_pg_nodes, save_pg_runs

if TYPE_CHECKING:
    import asyncpg

__all__ = ["PG_RECONCILE_IO"]

_LEDGER_PROJECT: Final = "flowledger_entry_project({}entry)"
"""An entry's namespace ('' for none), as the ledger's run index holds it; ``{}``: an alias and a dot, or nothing."""
_PROJECT: Final = "coalesce({}project, '')"
"""A projection row's namespace, as the run-id indexes of ``runs`` and ``node_runs`` hold it."""
_NEXT_IDS: Final = (
    ("ledger", "DISTINCT run_id", _LEDGER_PROJECT.format("")),
    ("runs", "run_id", _PROJECT.format("")),
    ("node_runs", "DISTINCT run_id", _PROJECT.format("")),
)
"""Where the walk finds run ids: each table, what it selects, and its namespace (for a project's walk)."""


def _of_project(namespace: str, project: str | None, number: int) -> tuple[str, list[str]]:
    """SQL keeping ``project``'s rows only (parameter ``$number``), or nothing for no project."""
    return ("", []) if project is None else (f" AND {namespace} = ${number}", [project])


class _PgIO:
    async def head(self, conn: asyncpg.Connection) -> int:
        return int(await conn.fetchval("SELECT coalesce(max(seq), 0) FROM ledger"))

    async def recent_ids(
        self, conn: asyncpg.Connection, after_seq: int, max_events: int, project: str | None
    ) -> tuple[list[str], int]:
        head = await self.head(conn)
        mine, params = _of_project(_LEDGER_PROJECT.format(""), project, 3)
        rows = await conn.fetch(
            f"SELECT run_id FROM ledger WHERE seq > $1 AND kind <> $2{mine} ORDER BY seq",
            max(after_seq, head - max_events),
            PURGE_KIND,
            *params,
        )
        return list(dict.fromkeys(str(row[0]) for row in rows)), head

    async def next_ids(
        self, conn: asyncpg.Connection, after: str, limit: int, project: str | None
    ) -> tuple[list[str], str | None]:
        found: set[str] = set()
        bound: str | None = None
        for table, select, namespace in _NEXT_IDS:
            mine, params = _of_project(namespace, project, 3)
            sql = f"SELECT {select} FROM {table} WHERE run_id > $1{mine} ORDER BY run_id LIMIT $2"
            ids = [str(row[0]) for row in await conn.fetch(sql, after, limit, *params)]
            found.update(ids)
            if len(ids) == limit:
                bound = ids[-1] if bound is None else min(bound, ids[-1])
        if bound is None:
            return sorted(found), None
        return sorted(i for i in found if i <= bound), bound

    async def ledger_rows(
        self, conn: asyncpg.Connection, run_ids: Sequence[str], project: str | None
    ) -> Iterable[Sequence[Any]]:
        mine, params = _of_project(_LEDGER_PROJECT.format("l."), project, 2)
        return list(
            await conn.fetch(
                "SELECT l.seq, l.kind, p.body FROM ledger l LEFT JOIN payloads p ON p.seq = l.seq "
                f"WHERE l.run_id = ANY($1::text[]){mine} ORDER BY l.seq",
                list(run_ids),
                *params,
            )
        )

    async def stored(
        self, conn: asyncpg.Connection, run_ids: Sequence[str], project: str | None
    ) -> tuple[dict[str, RunState], dict[tuple[str, str], NodeState]]:
        mine, params = _of_project(_PROJECT.format(""), project, 2)
        runs = {
            run_key(row["project"], row["run_id"]): run_from_record(tuple(row))
            for row in await conn.fetch(
                f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE run_id = ANY($1::text[]){mine}",
                list(run_ids),
                *params,
            )
        }
        nodes = {
            (run_key(row["project"], row["run_id"]), str(row["span_id"])): node_from_row(tuple(row))
            for row in await conn.fetch(
                f"SELECT {', '.join(NODE_COLUMNS)} FROM node_runs WHERE run_id = ANY($1::text[]){mine}",
                list(run_ids),
                *params,
            )
        }
        return runs, nodes

    async def replace(
        self,
        conn: asyncpg.Connection,
        runs_of: Sequence[tuple[str, str]],
        runs: Sequence[RunState],
        nodes: Sequence[NodeState],
    ) -> None:
        ids, spaces = [run_id for run_id, _ in runs_of], [space for _, space in runs_of]
        for table in ("node_runs", "runs"):
            await conn.execute(
                f"DELETE FROM {table} WHERE (run_id, coalesce(project, '')) IN "
                "(SELECT * FROM unnest($1::text[], $2::text[]))",
                ids,
                spaces,
            )
        await save_pg_runs(conn, runs)
        await save_pg_nodes(conn, nodes)


PG_RECONCILE_IO: Final = _PgIO()
"""The PostgreSQL engine's reads and writes of a reconciliation."""
