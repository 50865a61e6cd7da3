"""Refolding the projections from the ledger, and the drift it finds.

:func:`refold` runs inside the caller's write transaction: it copies the
projections aside, empties them, folds every ledger event again in chunks
(with the same :class:`~flowledger.receiver.store._projector.Projector` ingest uses),
keeps the sweeper's ``stuck`` verdicts (they are not in the ledger), takes the
stored runs out of the error groups and statistics before folding them back in
(:mod:`._rollups`: what purged runs added stays), and
compares the new rows with the old ones. Purged runs stay purged: their
entries have no payload left to fold.

The copies are TEMP tables, as large as the projections. The writer keeps its
temporary storage in memory (``temp_store = MEMORY``: ingest's few sorts and
statement journals are small), so a rebuild runs under :func:`temp_on_disk`,
which puts it in a temporary file for the rebuild's duration: the memory a
rebuild takes then stays near the page caches' size (-2000 pages, 2 MB, for the
temporary file) rather than growing with the ledger.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import aiosqlite

from flowledger._wire import EventKind, RunStatus
from flowledger.receiver.store._entry import ENTRY_COLUMNS, PURGE_KIND, entry_of, parse_entry
from flowledger.receiver.store._event import PreparedEvent
from flowledger.receiver.store._logs import LogSource
from flowledger.receiver.store._projector import Projector
from flowledger.receiver.store._protocol import Drift
from flowledger.receiver.store._rollups import retract_stored
from flowledger.receiver.store._search import SearchSource
from flowledger.receiver.store._time import normalize_ts

__all__ = ["event_from_body", "refold", "temp_on_disk"]

_REBUILD_CHUNK: Final = 5_000
_TABLES: Final = ("runs", "node_runs", "producers", "custom_metrics")
_RUN: Final = "run_id, ifnull(project, '')"
"""What names a run (its id and its project's namespace), as a row value."""
_FINISH_KINDS: Final = frozenset({EventKind.RUN_FINISHED, EventKind.NODE_FINISHED})


def event_from_body(body: str, seq: int) -> PreparedEvent:
    """Rebuild a PreparedEvent from a stored canonical body (for refolding)."""
    raw = json.loads(body)
    data = raw["data"]
    kind = EventKind(raw["kind"])
    # Only the finish events define started_at; another kind may carry one as free data.
    started = data.get("started_at") if kind in _FINISH_KINDS else None
    return PreparedEvent(
        index=0,
        event_id=raw["event_id"],
        run_id=raw["run_id"],
        kind=kind,
        ts=normalize_ts(raw["ts"]),
        started_at=None if started is None else normalize_ts(started),
        project=raw.get("project"),
        producer_id=raw["producer_id"],
        producer_seq=raw["producer_seq"],
        data=data,
        body=body,
        body_bytes=b"",
        seq=seq,
    )


def purged_fields(entry: bytes) -> dict[str, Any]:
    """The fields of a purged event's entry, or none when it cannot be read (``verify`` names that row)."""
    try:
        return parse_entry(entry)
    except ValueError:
        return {}


async def _count(conn: aiosqlite.Connection, sql: str) -> int:
    rows = await conn.execute_fetchall(sql)
    return int(next(iter(rows))[0])


@asynccontextmanager
async def temp_on_disk(conn: aiosqlite.Connection) -> AsyncIterator[None]:
    """Keep ``conn``'s TEMP tables and other temporary storage in a file for the block, then as it was.

    Outside any transaction only (SQLite refuses to change it inside one). Changing it drops the connection's
    TEMP tables, which no one keeps between transactions (a purge makes its own again).
    """
    rows = list(await conn.execute_fetchall("PRAGMA temp_store"))
    before = int(rows[0][0])
    await conn.execute("PRAGMA temp_store = FILE")
    try:
        yield
    finally:
        await conn.execute(f"PRAGMA temp_store = {before}")


async def refold(conn: aiosqlite.Connection) -> Drift:
    """Drop and refold ``runs``, ``node_runs`` and ``producers``; return the drift against the old rows."""
    drift = Drift()
    tables = _TABLES
    await retract_stored(conn)
    for table in tables:
        await conn.execute(f"DROP TABLE IF EXISTS temp.old_{table}")
        await conn.execute(f"CREATE TEMP TABLE old_{table} AS SELECT * FROM main.{table}")
        await conn.execute(f"DELETE FROM main.{table}")
    # The SDK's log lines are folded from the ledger again; OTLP lines are not in the ledger and stay.
    await conn.execute(f"DELETE FROM main.logs WHERE source = '{LogSource.SDK.value}'")
    await conn.execute("DELETE FROM main.log_drops")
    # Search rows come back with what they index; those of OTLP lines stay with their lines.
    await conn.execute(f"DELETE FROM main.search_text WHERE source <> '{SearchSource.LOG_OTLP}'")
    await conn.execute("DELETE FROM main.run_attributes")
    await conn.execute("DELETE FROM main.sampled_out")
    last = 0
    while True:
        rows = list(
            await conn.execute_fetchall(
                f"SELECT l.seq, l.kind, p.body, {ENTRY_COLUMNS.format('l.')} FROM ledger l "
                "LEFT JOIN payloads p ON p.seq = l.seq WHERE l.seq > ? ORDER BY l.seq LIMIT ?",
                (last, _REBUILD_CHUNK),
            )
        )
        if not rows:
            break
        last = int(rows[-1][0])
        # Entries without a payload were purged (with their runs); purge entries are not events.
        events = [event_from_body(row[2], row[0]) for row in rows if row[2] is not None and row[1] != PURGE_KIND]
        projector = Projector(conn)
        await projector.load(events)
        for event in events:
            projector.apply(event, event.producer_id, event.producer_seq)
        for row in rows:  # a purged run's events still count for their producers, as they did at ingest
            if row[2] is None and row[1] != PURGE_KIND:
                projector.count_purged(purged_fields(entry_of(row[3:])))
        await projector.flush()
        drift.events += len(events)
    # Stuck is the sweeper's verdict, not the ledger's: keep it for runs still running.
    await conn.execute(
        f"UPDATE main.runs SET status = '{RunStatus.STUCK.value}', stuck_reason = "
        "(SELECT o.stuck_reason FROM old_runs o WHERE o.run_id = runs.run_id "
        "AND ifnull(o.project, '') = ifnull(runs.project, '')) "
        f"WHERE status = '{RunStatus.RUNNING.value}' AND ({_RUN}) IN "
        f"(SELECT {_RUN} FROM old_runs WHERE status = '{RunStatus.STUCK.value}')"
    )
    drift.runs_missing = [
        r[0]
        for r in await conn.execute_fetchall(
            f"SELECT run_id FROM main.runs WHERE ({_RUN}) NOT IN (SELECT {_RUN} FROM old_runs) ORDER BY run_id"
        )
    ]
    drift.runs_extra = [
        r[0]
        for r in await conn.execute_fetchall(
            f"SELECT run_id FROM old_runs WHERE ({_RUN}) NOT IN (SELECT {_RUN} FROM main.runs) ORDER BY run_id"
        )
    ]
    drift.runs_changed = [
        r[0]
        for r in await conn.execute_fetchall(
            "SELECT run_id FROM (SELECT * FROM main.runs EXCEPT SELECT * FROM old_runs) "
            f"WHERE ({_RUN}) IN (SELECT {_RUN} FROM old_runs) ORDER BY run_id"
        )
    ]
    drift.nodes_missing = await _count(
        conn,
        f"SELECT count(*) FROM (SELECT {_RUN}, span_id FROM main.node_runs "
        f"EXCEPT SELECT {_RUN}, span_id FROM old_node_runs)",
    )
    drift.nodes_extra = await _count(
        conn,
        f"SELECT count(*) FROM (SELECT {_RUN}, span_id FROM old_node_runs "
        f"EXCEPT SELECT {_RUN}, span_id FROM main.node_runs)",
    )
    drift.nodes_changed = (
        await _count(
            conn,
            "SELECT count(*) FROM (SELECT * FROM main.node_runs EXCEPT SELECT * FROM old_node_runs)",
        )
        - drift.nodes_missing
    )
    for table in tables:
        await conn.execute(f"DROP TABLE temp.old_{table}")
    return drift
