"""``rebuild`` on the PostgreSQL engine: the projections dropped and folded again from the ledger, with the drift.

Runs inside the caller's transaction, which holds the chain's lock (so no append folds meanwhile). The old rows are
kept in temporary tables for the comparison; the fold is the ingest's projector (:class:`~._projector.PgProjector`),
a chunk of entries at a time, so both fold alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from flowledger._wire import RunStatus
from flowledger.receiver.store._entry import PURGE_KIND
from flowledger.receiver.store._logs import LogSource
from flowledger.receiver.store._protocol import Drift
from flowledger.receiver.store._rebuild import event_from_body, purged_fields
from flowledger.receiver.store.postgres._namespace import PG_SPACE
from flowledger.receiver.store.postgres._projector import PgProjector, clear_for_refold

if TYPE_CHECKING:
    import asyncpg

__all__ = ["pg_refold"]

_REBUILD_CHUNK: Final = 5_000
_RUN: Final = f"run_id, {PG_SPACE.format('')}"
"""What names a run (its id and its project's namespace), as a row value."""


async def pg_refold(conn: asyncpg.Connection) -> Drift:
    """Drop and refold ``runs``, ``node_runs`` and ``producers``; return the drift against the old rows."""
    drift = Drift()
    await clear_for_refold(conn)  # search text, attributes, custom metrics; finished runs out of the sums
    for table in ("runs", "node_runs", "producers"):
        await conn.execute(f"CREATE TEMP TABLE old_{table} ON COMMIT DROP AS SELECT * FROM {table}")
        await conn.execute(f"DELETE FROM {table}")
    # The SDK's log lines are folded from the ledger again; OTLP lines are not in the ledger and stay.
    await conn.execute("DELETE FROM logs WHERE source = $1", LogSource.SDK.value)
    await conn.execute("DELETE FROM log_drops")
    await conn.execute("DELETE FROM sampled_out")
    last = 0
    while True:
        rows = await conn.fetch(
            "SELECT l.seq, l.kind, p.body, l.entry FROM ledger l LEFT JOIN payloads p ON p.seq = l.seq "
            "WHERE l.seq > $1 ORDER BY l.seq LIMIT $2",
            last,
            _REBUILD_CHUNK,
        )
        if not rows:
            break
        last = int(rows[-1][0])
        kept = [r for r in rows if r["kind"] != PURGE_KIND]  # purge entries are not events
        events = [event_from_body(r["body"], r["seq"]) for r in kept if r["body"] is not None]
        projector = PgProjector(conn)
        await projector.load(events)
        for event in events:
            projector.apply(event, event.producer_id, event.producer_seq)
        for row in kept:  # a purged run's events still count for their producers, as they did at ingest
            if row["body"] is None:
                projector.count_purged(purged_fields(bytes(row["entry"])))
        await projector.flush()
        drift.events += len(events)
    # Stuck is the sweeper's verdict, not the ledger's: keep it for runs still running.
    await conn.execute(
        f"UPDATE runs SET status = '{RunStatus.STUCK.value}', stuck_reason = o.stuck_reason FROM old_runs o "
        f"WHERE o.run_id = runs.run_id AND coalesce(o.project, '') = coalesce(runs.project, '') "
        f"AND runs.status = '{RunStatus.RUNNING.value}' "
        f"AND o.status = '{RunStatus.STUCK.value}'"
    )
    drift.runs_missing = [
        r[0] for r in await conn.fetch(f"SELECT {_RUN} FROM runs EXCEPT SELECT {_RUN} FROM old_runs ORDER BY 1")
    ]
    drift.runs_extra = [
        r[0] for r in await conn.fetch(f"SELECT {_RUN} FROM old_runs EXCEPT SELECT {_RUN} FROM runs ORDER BY 1")
    ]
    drift.runs_changed = [
        r[0]
        for r in await conn.fetch(
            "SELECT run_id FROM (SELECT * FROM runs EXCEPT SELECT * FROM old_runs) d "
            f"WHERE ({_RUN}) IN (SELECT {_RUN} FROM old_runs) ORDER BY run_id"
        )
    ]
    drift.nodes_missing = int(
        await conn.fetchval(
            f"SELECT count(*) FROM (SELECT {_RUN}, span_id FROM node_runs "
            f"EXCEPT SELECT {_RUN}, span_id FROM old_node_runs) d"
        )
    )
    drift.nodes_extra = int(
        await conn.fetchval(
            f"SELECT count(*) FROM (SELECT {_RUN}, span_id FROM old_node_runs "
            f"EXCEPT SELECT {_RUN}, span_id FROM node_runs) d"
        )
    )
    drift.nodes_changed = (
        int(await conn.fetchval("SELECT count(*) FROM (SELECT * FROM node_runs EXCEPT SELECT * FROM old_node_runs) d"))
        - drift.nodes_missing
    )
    return drift
