"""The running sums of finished runs and attempts on PostgreSQL: error groups and statistics, kept as they fold.

:mod:`.._rollups` reduces the states a projector loaded and wrote to their
facts and hands over what changed (:meth:`~.._rollups.RollupTracker.changes`,
:func:`~.._rollups.fact_changes`); this module writes that to this engine's
error groups (:mod:`._error_groups`) and statistics (:mod:`._stats`), in the
caller's transaction. A rebuild first takes every stored finished run and
attempt out of the sums (:func:`retract_pg_stored`), then folds them back
in, so what purged runs added stays, as on SQLite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from flowledger.receiver.store._rollups import (
    NODE_FACT_SQL,
    RUN_FACT_SQL,
    NodeFacts,
    RunFacts,
    after_node,
    after_run,
    fact_changes,
)
from flowledger.receiver.store.postgres._dialect import numbered
from flowledger.receiver.store.postgres._error_groups import record_pg_failures
from flowledger.receiver.store.postgres._stats import exact_pg_extremes_of, record_pg_contributions

if TYPE_CHECKING:
    import asyncpg

__all__ = ["apply_pg_facts", "exact_pg_extremes", "retract_pg_stored"]

_CHUNK: Final = 5_000
_RUN_FACTS: Final = numbered(RUN_FACT_SQL.replace("main.", "").replace("ifnull(", "coalesce("))
_NODE_FACTS: Final = numbered(NODE_FACT_SQL.replace("main.", "").replace("ifnull(", "coalesce("))


async def apply_pg_facts(
    conn: asyncpg.Connection,
    *,
    added: tuple[list[RunFacts], list[NodeFacts]],
    removed: tuple[list[RunFacts], list[NodeFacts]],
    extremes: bool = True,
) -> None:
    """Add and take away facts in every sum; ``extremes``: find the statistics' min and max of the rows facts leave
    again (as on SQLite)."""
    changes = fact_changes(added=added, removed=removed)
    await record_pg_failures(conn, changes.failures_added, changes.failures_removed)
    await record_pg_contributions(conn, changes.contributions_added, changes.contributions_removed, extremes=extremes)


async def retract_pg_stored(conn: asyncpg.Connection) -> None:
    """Take every stored finished run and attempt out of the sums (a rebuild then folds them back in)."""
    last = ("", "")
    while rows := await conn.fetch(_RUN_FACTS, *last, _CHUNK):
        last = after_run(tuple(rows[-1]))
        await apply_pg_facts(conn, added=([], []), removed=([RunFacts(*row) for row in rows], []), extremes=False)
    last_key = ("", "", "")
    while rows := await conn.fetch(_NODE_FACTS, *last_key, _CHUNK):
        last_key = after_node(tuple(rows[-1]))
        await apply_pg_facts(
            conn, added=([], []), removed=([], [NodeFacts(*tuple(row)[:-1]) for row in rows]), extremes=False
        )


async def exact_pg_extremes(conn: asyncpg.Connection, removed: tuple[list[RunFacts], list[NodeFacts]]) -> None:
    """Find again the statistics' min and max of the rows facts taken out left (:func:`~.._stats.exact_extremes`),
    once the runs and attempts they read are saved."""
    await exact_pg_extremes_of(conn, fact_changes(added=([], []), removed=removed).contributions_removed)
