"""Applying folded events to the projection tables of one SQLite connection.

Used by ingest (new events of a batch) and by rebuild (every ledger event,
in chunks): load the states the events touch, fold, write the changed rows
back with multi-row inserts (:mod:`._bulk`). The caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from operator import attrgetter
from typing import Any, Final

from flowledger._wire import EventKind, NodeStatus, RunStatus
from flowledger.receiver.store._bulk import in_list, insert_rows
from flowledger.receiver.store._custom_metrics import MetricTotals
from flowledger.receiver.store._event import PreparedEvent
from flowledger.receiver.store._fold import (
    NODE_COLUMNS,
    RUN_COLUMNS,
    FoldEvent,
    NodeState,
    PurgedEvent,
    RunState,
    fold_node,
    fold_run,
    purged_producer,
)
from flowledger.receiver.store._logs import LogDrop, LogRow, append_log_rows, rows_of_event
from flowledger.receiver.store._namespace import namespace_of, run_key
from flowledger.receiver.store._on_thread import WriteConnection
from flowledger.receiver.store._rollups import RollupTracker
from flowledger.receiver.store._sampled import SAVE_SAMPLED_OUT, SAVE_SAMPLED_OUT_TAIL, sampled_out_key
from flowledger.receiver.store._search import INDEX_TEXTS_SQL, LAST_TEXT_ID_SQL, attributes_of_event, texts_of_event

__all__ = ["Projector", "load_runs", "save_runs"]

_CHUNK: Final = 400
"""Host parameters per ``IN (...)`` lookup (well under SQLite's limit)."""

_run_row: Final = attrgetter(*RUN_COLUMNS)
_node_row: Final = attrgetter(*NODE_COLUMNS)
_NODE_STARTED: Final = EventKind.NODE_STARTED
_NODE_FINISHED: Final = EventKind.NODE_FINISHED
_RUN_STARTED: Final = EventKind.RUN_STARTED
_NODE_LOGS: Final = EventKind.NODE_LOGS
_SAMPLED_OUT: Final = EventKind.RUN_SAMPLED_OUT

_SAVE_RUNS: Final = f"INSERT OR REPLACE INTO runs ({', '.join(RUN_COLUMNS)})"
_SAVE_NODES: Final = f"INSERT OR REPLACE INTO node_runs ({', '.join(NODE_COLUMNS)})"
_SAVE_TEXTS: Final = "INSERT INTO search_text (run_id, source, text, project)"
_SAVE_ATTRIBUTES: Final = "INSERT OR IGNORE INTO run_attributes (key, value, run_id, project)"
_SAVE_PRODUCERS: Final = "INSERT INTO producers (producer_id, max_seq, events, project, last_ts, last_run_id)"
_SAVE_PRODUCERS_TAIL: Final = """
ON CONFLICT (producer_id, ifnull(project, '')) DO UPDATE SET
    max_seq = max(producers.max_seq, excluded.max_seq),
    events = producers.events + excluded.events,
    last_run_id = CASE WHEN producers.last_ts IS NULL OR excluded.last_ts > producers.last_ts
                       OR (excluded.last_ts = producers.last_ts AND excluded.last_run_id > producers.last_run_id)
                  THEN excluded.last_run_id ELSE producers.last_run_id END,
    last_ts = nullif(max(coalesce(producers.last_ts, ''), coalesce(excluded.last_ts, '')), '')
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


async def load_runs(conn: WriteConnection, run_ids: Iterable[str]) -> dict[str, RunState]:
    """The stored states of runs with the given ids, in every project, by :func:`run_key`."""
    ids = list(run_ids)
    found: dict[str, RunState] = {}
    for start in range(0, len(ids), _CHUNK):
        part = ids[start : start + _CHUNK]
        marks, params = in_list(part)
        sql = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE run_id IN ({marks})"
        for row in await conn.execute_fetchall(sql, params):
            state = run_from_row(row)
            found[run_key(state.project, state.run_id)] = state
    return found


async def load_nodes(conn: WriteConnection, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], NodeState]:
    """The stored states of the given (:func:`run_key`, span_id) attempts.

    Looked up by run (a prefix of the primary key), which SQLite answers far
    faster than a list of key pairs; attempts of those runs that were not
    asked for are left out.
    """
    wanted = set(keys)
    run_ids = list({key.partition("\n")[2] for key, _ in wanted})
    found: dict[tuple[str, str], NodeState] = {}
    for start in range(0, len(run_ids), _CHUNK):
        part = run_ids[start : start + _CHUNK]
        marks, params = in_list(part)
        sql = f"SELECT {', '.join(NODE_COLUMNS)} FROM node_runs WHERE run_id IN ({marks})"
        for row in await conn.execute_fetchall(sql, params):
            node = node_from_row(row)
            key = (run_key(node.project, node.run_id), node.span_id)
            if key in wanted:
                found[key] = node
    return found


async def load_run_nodes(conn: WriteConnection, runs: Iterable[str]) -> dict[tuple[str, str], NodeState]:
    """The stored states of every attempt of the given runs (by :func:`run_key`)."""
    wanted = set(runs)
    run_ids = list({key.partition("\n")[2] for key in wanted})
    found: dict[tuple[str, str], NodeState] = {}
    for start in range(0, len(run_ids), _CHUNK):
        marks, params = in_list(run_ids[start : start + _CHUNK])
        sql = f"SELECT {', '.join(NODE_COLUMNS)} FROM node_runs WHERE run_id IN ({marks})"
        for row in await conn.execute_fetchall(sql, params):
            node = node_from_row(row)
            key = run_key(node.project, node.run_id)
            if key in wanted:
                found[key, node.span_id] = node
    return found


async def save_runs(conn: WriteConnection, runs: Iterable[RunState]) -> None:
    """Write run states back (whole rows)."""
    await insert_rows(conn, _SAVE_RUNS, [_run_row(run) for run in runs], width=len(RUN_COLUMNS))


class Projector:
    """Folds one batch of events into the projections of ``conn``."""

    def __init__(self, conn: WriteConnection) -> None:
        self._conn = conn
        self.runs: dict[str, RunState] = {}
        self._nodes: dict[tuple[str, str], NodeState] = {}
        self._dirty_runs: set[str] = set()
        self._dirty_nodes: set[tuple[str, str]] = set()
        self._producers: dict[tuple[str, str], list[Any]] = {}
        """(producer_id, :func:`namespace_of` project) -> [max_seq, events, project, last_ts, last_run_id] of this
        batch: a producer is its project's, as a run is (the same id in two projects is two producers)."""
        self._logs: list[LogRow] = []
        self._log_drops: list[LogDrop] = []
        self._texts: list[tuple[str, str, str, str | None]] = []
        """(run_id, source, text, project) rows for the full-text search."""
        self._attributes: list[tuple[str, str, str, str | None]] = []
        """(key, value, run_id, project) rows of run attributes."""
        self._sampled_out: dict[tuple[str, str, str], int] = {}
        """(workflow_id, project, day) -> runs dropped by sampling, in this batch."""
        self._rollups = RollupTracker()
        self._metrics = MetricTotals()

    async def load(self, events: Sequence[FoldEvent]) -> None:
        """Read the stored states of every run and attempt the events touch."""
        run_ids = {e.run_id for e in events if run_key(e.project, e.run_id) not in self.runs}
        for key, state in (await load_runs(self._conn, run_ids)).items():
            self.runs.setdefault(key, state)
        keys = {
            (run_key(e.project, e.run_id), e.data["span_id"])
            for e in events
            if e.kind is _NODE_STARTED or e.kind is _NODE_FINISHED
        } - self._nodes.keys()
        self._nodes.update(await load_nodes(self._conn, keys))
        self._rollups.remember(self.runs, self._nodes)

    def apply(self, event: PreparedEvent, producer_id: str | None = None, producer_seq: int = 0) -> None:
        """Fold one new event (its states must have been loaded; ``event.seq`` set)."""
        sampled_out = event.kind is _SAMPLED_OUT
        if sampled_out:  # a dropped run is counted, never made a run
            key = sampled_out_key(event.data, event.project, event.ts)
            self._sampled_out[key] = self._sampled_out.get(key, 0) + event.data["runs"]
        else:
            self._fold(event)
        if producer_id is not None:
            self._count_producer(event, producer_id, producer_seq, tail=not sampled_out)

    def _fold(self, event: PreparedEvent) -> None:
        run_id = event.run_id
        project = event.project
        key = run_key(project, run_id)
        runs = self.runs
        runs[key] = fold_run(runs.get(key), event)
        self._dirty_runs.add(key)
        kind = event.kind
        if kind is _NODE_STARTED or kind is _NODE_FINISHED:
            node_key = (key, event.data["span_id"])
            nodes = self._nodes
            before = nodes.get(node_key)
            first_finish = before is None or before.finished_event_id is None  # the fold may change it in place
            node = nodes[node_key] = fold_node(before, event)
            self._dirty_nodes.add(node_key)
            if first_finish and "metrics" in event.data:  # observe_attempt's first test, without its call
                self._metrics.observe_attempt(event, node, runs[key], first_finish=first_finish)
        elif kind is _NODE_LOGS:
            self._add_logs(event)
        elif kind is _RUN_STARTED:  # the one kind with attributes
            for name, value in attributes_of_event(kind, event.data):
                self._attributes.append((name, value, run_id, project))
        for source, text in texts_of_event(kind, event.data, plain_floats=event.plain_floats):
            self._texts.append((run_id, source, text, project))

    def count_purged(self, fields: Mapping[str, Any]) -> None:
        """Count an event whose payload was purged for its producer, from its entry's ``fields`` (a rebuild)."""
        counted = purged_producer(fields)
        if counted is not None:
            self._count_producer(*counted, tail=False)

    def _count_producer(
        self, event: FoldEvent | PurgedEvent, producer_id: str, producer_seq: int, *, tail: bool
    ) -> None:
        """Count the event for its producer; ``tail``: it may be the producer's newest event of a run."""
        run_id = event.run_id
        key = (producer_id, namespace_of(event.project))
        counts = self._producers.get(key)
        ts = event.ts if tail else ""
        if counts is None:
            self._producers[key] = [producer_seq, 1, event.project, ts or None, run_id if tail else None]
        else:
            if producer_seq > counts[0]:
                counts[0] = producer_seq
            counts[1] += 1
            if tail and (counts[3] is None or (ts, run_id) > (counts[3], counts[4])):
                counts[3], counts[4] = ts, run_id

    def _add_logs(self, event: FoldEvent) -> None:
        rows, drop = rows_of_event(run_id=event.run_id, event_id=event.event_id, project=event.project, data=event.data)
        self._logs += rows
        if drop is not None:
            self._log_drops.append(drop)

    async def flush(self) -> None:
        """Write every changed row (inside the caller's transaction).

        The sums come last: they read what they change, and each read waits for the statements queued
        before it (:mod:`._on_thread`), so the rows before them are built while those run. The texts come
        first: the log lines' trigger adds texts of its own, which :func:`append_log_rows` indexes.
        """
        conn = self._conn
        moved = self._rollups.moved_runs(self.runs, self._dirty_runs)
        if moved:  # rare: a run's workflow set after some of its attempts were stored (its run_started came late)
            await self._load_all_attempts(moved)
        if self._texts:
            (last,) = next(iter(await conn.execute_fetchall(LAST_TEXT_ID_SQL)))
            await insert_rows(conn, _SAVE_TEXTS, self._texts, width=4)
            await conn.execute(INDEX_TEXTS_SQL, (last,))
        if self._dirty_runs:
            rows = [_run_row(self.runs[r]) for r in self._dirty_runs]
            await insert_rows(conn, _SAVE_RUNS, rows, width=len(RUN_COLUMNS))
        if self._dirty_nodes:
            rows = [_node_row(self._nodes[k]) for k in self._dirty_nodes]
            await insert_rows(conn, _SAVE_NODES, rows, width=len(NODE_COLUMNS))
        if self._producers:
            rows = [(p, *c) for (p, _), c in self._producers.items()]
            await insert_rows(conn, _SAVE_PRODUCERS, rows, width=6, tail=_SAVE_PRODUCERS_TAIL)
        if self._logs or self._log_drops:
            await append_log_rows(conn, self._logs, self._log_drops)
        if self._attributes:
            await insert_rows(conn, _SAVE_ATTRIBUTES, self._attributes, width=4)
        if self._sampled_out:
            rows = [(*key, runs) for key, runs in self._sampled_out.items()]
            await insert_rows(conn, SAVE_SAMPLED_OUT, rows, width=4, tail=SAVE_SAMPLED_OUT_TAIL)
        await self._metrics.flush(conn)
        await self._rollups.flush(conn, self.runs, self._nodes, self._dirty_runs, self._dirty_nodes, moved=moved)
        self._dirty_runs.clear()
        self._dirty_nodes.clear()
        self._producers.clear()
        self._logs.clear()
        self._log_drops.clear()
        self._texts.clear()
        self._attributes.clear()
        self._sampled_out.clear()

    async def _load_all_attempts(self, runs: set[str]) -> None:
        """Load (and remember) the stored attempts of ``runs`` not loaded yet: their facts move with their run."""
        fresh = {key: node for key, node in (await load_run_nodes(self._conn, runs)).items() if key not in self._nodes}
        self._nodes.update(fresh)
        self._rollups.remember({}, fresh)

    def forget(self) -> None:
        """Drop the loaded states (rebuild calls this between chunks to bound memory)."""
        self.runs.clear()
        self._nodes.clear()
        self._rollups = RollupTracker()
