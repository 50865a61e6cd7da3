"""The sweeper on the PostgreSQL engine: one receiver at a time marks silent runs stuck.

Every receiver runs the sweeper loop; only the one holding the session-level
advisory lock :data:`SWEEPER_LOCK` on a connection of its own (a
:class:`SweeperLease`) sweeps, the others return at once. When the holder's
process dies its session ends, the lock with it, and the next receiver to
sweep takes it over. The sweep itself (:func:`pg_mark_stuck`) runs under the
chain's lock, so it never overwrites a run an append is folding.
"""

from __future__ import annotations

import os
from typing import Final

import asyncpg

from flowledger._wire import RunStatus
from flowledger.receiver.store._fold import RUN_COLUMNS, mark_stuck
from flowledger.receiver.store._time import epoch_s, ts_from_epoch_s
from flowledger.receiver.store.postgres._projector import run_from_record, save_pg_runs

__all__ = ["SWEEPER_LOCK", "SWEEPER_NAME", "SweeperLease", "pg_mark_stuck"]

SWEEPER_LOCK: Final = 0x666C6F77737765  # "flowswe": held by the sweeping receiver's session
SWEEPER_NAME: Final = "flowledger sweeper"
"""The ``application_name`` of the sweeper's connection, followed by the receiver's process id."""
_SWEEP_SQL: Final = (
    f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE status = '{RunStatus.RUNNING.value}' AND last_seen_at < $1 "
    "FOR UPDATE"
)
_LAST_HEARD_SQL: Final = (
    "SELECT max(received_at) FROM ledger WHERE run_id = $1 AND flowledger_entry_project(entry) = $2"
)


class SweeperLease:
    """The sweeper's lock, held by this receiver's session on a connection of its own (or not at all)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: asyncpg.Connection | None = None

    @property
    def is_held(self) -> bool:
        """Whether this receiver holds the lock (it sweeps)."""
        return self._conn is not None

    async def held(self) -> bool:
        """Whether this receiver may sweep: it holds the lock, or takes it now (a holder that died let go)."""
        if self._conn is not None:
            try:
                await self._conn.execute("SELECT 1")
                return True
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                dead, self._conn = self._conn, None  # the session is gone, and the lock with it
                dead.terminate()
        # Named, so that an operator (and the tests) can tell from pg_stat_activity which receiver sweeps.
        conn = await asyncpg.connect(self._url, server_settings={"application_name": f"{SWEEPER_NAME} {os.getpid()}"})
        try:
            if await conn.fetchval("SELECT pg_try_advisory_lock($1)", SWEEPER_LOCK):
                self._conn, conn = conn, None
                return True
            return False
        finally:
            if conn is not None:
                await conn.close()

    async def release(self) -> None:
        """Close the lock's connection (its session ends, and the lock with it); idempotent."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()


async def pg_mark_stuck(conn: asyncpg.Connection, *, now: str, stuck_after_s: float, heartbeats: int) -> list[str]:
    """Mark the running runs silent for longer than their threshold as stuck (in the caller's transaction, under
    the chain's lock); return their ids.

    A run's threshold is ``stuck_after_s`` or ``heartbeats`` of its own heartbeat intervals, whichever is longer;
    it is silent by the producer's clock (``last_seen_at``) and by the receiver's (the last entry it stored).
    """
    now_s = epoch_s(now)
    marked = []
    for row in await conn.fetch(_SWEEP_SQL, ts_from_epoch_s(now_s - stuck_after_s)):
        run = run_from_record(tuple(row))
        threshold_s = max(stuck_after_s, heartbeats * (run.heartbeat_interval_s or 0.0))
        if run.last_seen_at is None or epoch_s(run.last_seen_at) > now_s - threshold_s:
            continue
        heard = await conn.fetchval(_LAST_HEARD_SQL, run.run_id, run.project or "")
        if heard is not None and epoch_s(heard) > now_s - threshold_s:
            continue
        reason = f"no event since {run.last_seen_at}: more than {threshold_s:g} s without a heartbeat"
        if mark_stuck(run, reason):
            marked.append(run)
    await save_pg_runs(conn, marked)
    return [run.run_id for run in marked]
