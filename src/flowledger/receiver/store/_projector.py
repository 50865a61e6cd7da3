"""Applying folded events to the projection tables of one SQLite connection.

Used by ingest (new events of a batch) and by rebuild (every ledger event,
in chunks): load the states the events touch, fold, write the changed rows
back with multi-row inserts (:mod:`._bulk`). The caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from operator import attrgetter
from typing import Any, Final

import aiosqlite

from flowledger._wire import EventKind, NodeStatus, RunStatus
from flowledger.receiver.store._bulk import insert_rows
from flowledger.receiver.store._custom_metrics import MetricTotals
from flowledger.receiver.store._fold import (
    NODE_COLUMNS,
    RUN_COLUMNS,
    FoldEvent,
    NodeState,
    RunState,
    fold_node,
    fold_run,
)

__all__ = ["Projector", "load_runs", "save_runs"]

_CHUNK: Final = 400
"""Host parameters per ``IN (...)`` lookup (well under SQLite's limit)."""

_run_row: Final = attrgetter(*RUN_COLUMNS)
_node_row: Final = attrgetter(*NODE_COLUMNS)
_NODE_KINDS: Final = frozenset({EventKind.NODE_STARTED, EventKind.NODE_FINISHED})

_SAVE_RUNS: Final = f"INSERT OR REPLACE INTO runs ({', '.join(RUN_COLUMNS)})"
_SAVE_NODES: Final = f"INSERT OR REPLACE INTO node_runs ({', '.join(NODE_COLUMNS)})"
_SAVE_PRODUCERS: Final = "INSERT INTO producers (producer_id, max_seq, events, project, last_ts, last_run_id)"
_SAVE_PRODUCERS_TAIL: Final = """
ON CONFLICT (producer_id) DO UPDATE SET
    max_seq = max(producers.max_seq, excluded.max_seq),
    events = producers.events + excluded.events,
    project = coalesce(producers.project, excluded.project),
    last_run_id = CASE WHEN producers.last_ts IS NULL OR excluded.last_ts > producers.last_ts
                       OR (excluded.last_ts = producers.last_ts AND excluded.last_run_id > producers.last_run_id)
                  THEN excluded.last_run_id ELSE producers.last_run_id END,
    last_ts = max(coalesce(producers.last_ts, ''), excluded.last_ts)
"""


def run_from_row(row: Sequence[Any]) -> RunState:
    """A RunState from a ``runs`` row selected with RUN_COLUMNS."""
    state = RunState(*row)
    state.status = RunStatus(state.status)
    state.seen = True
    return state


def node_from_row(row: Sequence[Any]) -> NodeState:
    """A NodeState from a ``node_runs`` row selected with NODE_COLUMNS."""
    state = NodeState(*row)
    if state.status is not None:
        state.status = NodeStatus(state.status)
    return state


async def load_runs(conn: aiosqlite.Connection, run_ids: Iterable[str]) -> dict[str, RunState]:
    """The stored states of the given runs (absent ones are left out)."""
    ids = list(run_ids)
    found: dict[str, RunState] = {}
    for start in range(0, len(ids), _CHUNK):
        part = ids[start : start + _CHUNK]
        sql = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE run_id IN ({', '.join('?' * len(part))})"
        for row in await conn.execute_fetchall(sql, part):
            state = run_from_row(row)
            found[state.run_id] = state
    return found


async def load_nodes(conn: aiosqlite.Connection, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], NodeState]:
    """The stored states of the given (run_id, span_id) attempts.

    Looked up by run (a prefix of the primary key), which SQLite answers far
    faster than a list of key pairs; attempts of those runs that were not
    asked for are left out.
    """
    wanted = set(keys)
    run_ids = list({run_id for run_id, _ in wanted})
    found: dict[tuple[str, str], NodeState] = {}
    for start in range(0, len(run_ids), _CHUNK):
        part = run_ids[start : start + _CHUNK]
        sql = f"SELECT {', '.join(NODE_COLUMNS)} FROM node_runs WHERE run_id IN ({', '.join('?' * len(part))})"
        for row in await conn.execute_fetchall(sql, part):
            key = (row[0], row[1])
            if key in wanted:
                found[key] = node_from_row(row)
    return found


async def save_runs(conn: aiosqlite.Connection, runs: Iterable[RunState]) -> None:
    """Write run states back (whole rows)."""
    await insert_rows(conn, _SAVE_RUNS, [_run_row(run) for run in runs], width=len(RUN_COLUMNS))


class Projector:
    """Folds one batch of events into the projections of ``conn``."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self.runs: dict[str, RunState] = {}
        self._nodes: dict[tuple[str, str], NodeState] = {}
        self._dirty_runs: set[str] = set()
        self._dirty_nodes: set[tuple[str, str]] = set()
        self._producers: dict[str, list[Any]] = {}
        """producer_id -> [max_seq, events, project, last_ts, last_run_id] of this batch."""
        self._metrics = MetricTotals()

    async def load(self, events: Sequence[FoldEvent]) -> None:
        """Read the stored states of every run and attempt the events touch."""
        run_ids = {e.run_id for e in events} - self.runs.keys()
        self.runs.update(await load_runs(self._conn, run_ids))
        keys = {(e.run_id, e.data["span_id"]) for e in events if e.kind in _NODE_KINDS} - self._nodes.keys()
        self._nodes.update(await load_nodes(self._conn, keys))

    def project_of(self, run_id: str) -> str | None:
        """The project a run is bound to so far, if any."""
        run = self.runs.get(run_id)
        return None if run is None else run.project

    def apply(self, event: FoldEvent, producer_id: str | None = None, producer_seq: int = 0) -> None:
        """Fold one new event (its states must have been loaded; ``event.seq`` set)."""
        run_id = event.run_id
        runs = self.runs
        runs[run_id] = fold_run(runs.get(run_id), event)
        self._dirty_runs.add(run_id)
        if event.kind in _NODE_KINDS:
            node_key = (run_id, event.data["span_id"])
            nodes = self._nodes
            before = nodes.get(node_key)
            first_finish = before is None or before.finished_event_id is None
            node = nodes[node_key] = fold_node(before, event)
            self._dirty_nodes.add(node_key)
            if (
                first_finish
                and node.finished_event_id == event.event_id
                and node.completed_at is not None
                and "metrics" in event.data
            ):
                run = runs[run_id]
                self._metrics.observe(
                    event.data["metrics"],
                    project=event.project or run.project,
                    workflow_id=event.data.get("workflow_id") or run.workflow_id,
                    node_id=node.node_id,
                    finished_at=node.completed_at,
                )
        if producer_id is not None:
            counts = self._producers.get(producer_id)
            ts = event.ts
            if counts is None:
                self._producers[producer_id] = [producer_seq, 1, event.project, ts, run_id]
            else:
                if producer_seq > counts[0]:
                    counts[0] = producer_seq
                counts[1] += 1
                if counts[2] is None:
                    counts[2] = event.project
                if (ts, run_id) > (counts[3], counts[4]):
                    counts[3], counts[4] = ts, run_id

    async def flush(self) -> None:
        """Write every changed row (inside the caller's transaction)."""
        conn = self._conn
        if self._dirty_runs:
            rows = [_run_row(self.runs[r]) for r in self._dirty_runs]
            await insert_rows(conn, _SAVE_RUNS, rows, width=len(RUN_COLUMNS))
        if self._dirty_nodes:
            rows = [_node_row(self._nodes[k]) for k in self._dirty_nodes]
            await insert_rows(conn, _SAVE_NODES, rows, width=len(NODE_COLUMNS))
        if self._producers:
            rows = [(p, *c) for p, c in self._producers.items()]
            await insert_rows(conn, _SAVE_PRODUCERS, rows, width=6, tail=_SAVE_PRODUCERS_TAIL)
        await self._metrics.flush(conn)
        self._dirty_runs.clear()
        self._dirty_nodes.clear()
        self._producers.clear()

    def forget(self) -> None:
        """Drop the loaded states (rebuild calls this between chunks to bound memory)."""
        self.runs.clear()
        self._nodes.clear()
