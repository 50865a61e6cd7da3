"""Folding events into the PostgreSQL engine's run, node-attempt and producer rows.

The fold itself is the engine-neutral state machine of :mod:`.._fold`; this
module only loads the states a batch touches and writes the changed rows back
(an upsert per table), inside the caller's transaction. Log lines of ``node_logs``
events are kept too (:mod:`._logs`), and the runs dropped by sampling are
counted (``sampled_out``). Beside them, as on SQLite, it keeps the search
text and run attributes (:mod:`._search`), the error groups and statistics
(:mod:`._rollups`, from what :class:`~.._rollups.RollupTracker` sees change)
and the custom metric totals (:mod:`._custom_metrics`).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from flowledger._wire import EventKind, NodeStatus, RunStatus
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
from flowledger.receiver.store._logs import LogDrop, LogRow, rows_of_event
from flowledger.receiver.store._namespace import namespace_of, run_key
from flowledger.receiver.store._rollups import RollupTracker
from flowledger.receiver.store._sampled import sampled_out_key
from flowledger.receiver.store._search import SearchSource, attributes_of_event, texts_of_event
from flowledger.receiver.store.postgres._custom_metrics import add_pg_custom_metrics
from flowledger.receiver.store.postgres._dialect import NUL_ESCAPE, without_nul
from flowledger.receiver.store.postgres._logs import append_pg_logs
from flowledger.receiver.store.postgres._namespace import PG_SPACE
from flowledger.receiver.store.postgres._rollups import apply_pg_facts, exact_pg_extremes, retract_pg_stored
from flowledger.receiver.store.postgres._schema import column_type
from flowledger.receiver.store.postgres._search import save_pg_attributes, save_pg_texts

if TYPE_CHECKING:
    import asyncpg

__all__ = [
    "PgProjector",
    "clear_for_refold",
    "columns_of",
    "load_pg_runs",
    "run_values",
    "save_pg_nodes",
    "save_pg_runs",
]

_NODE_KINDS: Final = frozenset({EventKind.NODE_STARTED, EventKind.NODE_FINISHED})
_SAMPLED_OUT: Final = EventKind.RUN_SAMPLED_OUT
_NODE_LOGS: Final = EventKind.NODE_LOGS


def _array_type(state: type, column: str) -> str:
    """The array type a column's values are sent as (``text[]``, ``bigint[]``...)."""
    annotation = next(f.type for f in dataclasses.fields(state) if f.name == column)
    return column_type(annotation).split(" COLLATE")[0] + "[]"


def _upsert(table: str, state: type, columns: Sequence[str], key: Sequence[str]) -> str:
    """One statement writing many whole rows: each column sent as one array, the rows ``unnest``-ed.

    ``key`` names the unique index's columns and expressions (a run is its id and its project's namespace).
    """
    arrays = ", ".join(f"${i + 1}::{_array_type(state, c)}" for i, c in enumerate(columns))
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in key)
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays}) "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


def columns_of(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows turned into one list per column (the arrays of an ``unnest`` insert)."""
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


_SPACE: Final = f"({PG_SPACE.format('')})"
_SAVE_RUNS: Final = _upsert("runs", RunState, RUN_COLUMNS, ("run_id", _SPACE))
_SAVE_NODES: Final = _upsert("node_runs", NodeState, NODE_COLUMNS, ("run_id", _SPACE, "span_id"))
_SAVE_SAMPLED_OUT: Final = (
    "INSERT INTO sampled_out AS s (workflow_id, project, day, runs) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (workflow_id, project, day) DO UPDATE SET runs = s.runs + EXCLUDED.runs"
)
_SAVE_PRODUCERS: Final = """
INSERT INTO producers AS p (producer_id, max_seq, events, project, last_ts, last_run_id)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (producer_id, coalesce(project, '')) DO UPDATE SET
    max_seq = greatest(p.max_seq, EXCLUDED.max_seq),
    events = p.events + EXCLUDED.events,
    last_run_id = CASE WHEN p.last_ts IS NULL OR EXCLUDED.last_ts > p.last_ts
                       OR (EXCLUDED.last_ts = p.last_ts AND EXCLUDED.last_run_id > p.last_run_id)
                  THEN EXCLUDED.last_run_id ELSE p.last_run_id END,
    last_ts = nullif(greatest(coalesce(p.last_ts, ''), coalesce(EXCLUDED.last_ts, '')), '')
"""


def _plain(value: Any) -> Any:
    return value._value_ if isinstance(value, enum.Enum) else value


def run_values(run: RunState) -> list[Any]:
    """A run's row in RUN_COLUMNS order, enums as their text."""
    return [_plain(getattr(run, column)) for column in RUN_COLUMNS]


def _node_values(node: NodeState) -> list[Any]:
    return [_plain(getattr(node, column)) for column in NODE_COLUMNS]


def run_from_record(row: Sequence[Any]) -> RunState:
    """A RunState from a ``runs`` row selected with RUN_COLUMNS."""
    state = RunState(*row)
    state.status = RunStatus(state.status)
    state.seen = True
    return state


async def load_pg_runs(conn: asyncpg.Connection, run_ids: Iterable[str]) -> dict[str, RunState]:
    """The stored states of runs with the given ids, in every project, by :func:`~.._namespace.run_key`."""
    rows = await conn.fetch(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE run_id = ANY($1::text[])", list(run_ids))
    return {run_key(row["project"], row["run_id"]): run_from_record(tuple(row)) for row in rows}


async def _load_pg_nodes(conn: asyncpg.Connection, runs: set[str]) -> dict[tuple[str, str], NodeState]:
    """The stored states of every attempt of the given runs (by :func:`~.._namespace.run_key`)."""
    rows = await conn.fetch(
        f"SELECT {', '.join(NODE_COLUMNS)} FROM node_runs WHERE run_id = ANY($1::text[])",
        list({run.partition("\n")[2] for run in runs}),
    )
    found: dict[tuple[str, str], NodeState] = {}
    for row in rows:
        run = run_key(row["project"], row["run_id"])
        if run in runs:
            state = NodeState(*tuple(row))
            if state.status is not None:
                state.status = NodeStatus(state.status)
            found[run, row["span_id"]] = state
    return found


async def save_pg_runs(conn: asyncpg.Connection, runs: Iterable[RunState]) -> None:
    """Write run states back (whole rows, one statement)."""
    rows = [run_values(run) for run in runs]
    if rows:
        await conn.execute(_SAVE_RUNS, *columns_of(rows, len(RUN_COLUMNS)))


async def save_pg_nodes(conn: asyncpg.Connection, nodes: Iterable[NodeState]) -> None:
    """Write node-attempt states back (whole rows, one statement)."""
    rows = [_node_values(node) for node in nodes]
    if rows:
        await conn.execute(_SAVE_NODES, *columns_of(rows, len(NODE_COLUMNS)))


class PgProjector:
    """Folds one batch of events into the run, node-attempt and producer rows of ``conn``."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.runs: dict[str, RunState] = {}
        self._nodes: dict[tuple[str, str], NodeState] = {}
        self._dirty_runs: set[str] = set()
        self._dirty_nodes: set[tuple[str, str]] = set()
        self._producers: dict[tuple[str, str], list[Any]] = {}
        """(producer_id, :func:`~.._namespace.namespace_of` project) -> [max_seq, events, project, last_ts,
        last_run_id] of this batch: a producer is its project's, as a run is."""
        self._logs: list[LogRow] = []
        self._log_drops: list[LogDrop] = []
        self._sampled_out: dict[tuple[str, str, str], int] = {}
        """(workflow_id, project, day) -> runs dropped by sampling, in this batch."""
        self._texts: list[tuple[str, str | None, str, str]] = []
        """(run_id, project, source, text) rows for the full-text search."""
        self._attributes: list[tuple[str, str, str, str | None]] = []
        """(key, value, run_id, project) rows of run attributes."""
        self._rollups = RollupTracker()
        self._metrics = MetricTotals()

    async def load(self, events: Sequence[FoldEvent]) -> None:
        """Read the stored states of every run and attempt the events touch."""
        run_ids = {e.run_id for e in events if run_key(e.project, e.run_id) not in self.runs}
        for run, loaded in (await load_pg_runs(self._conn, run_ids)).items():
            self.runs.setdefault(run, loaded)
        keys = {
            (run_key(e.project, e.run_id), e.data["span_id"]) for e in events if e.kind in _NODE_KINDS
        } - self._nodes.keys()
        if keys:
            rows = await self._conn.fetch(
                f"SELECT {', '.join(NODE_COLUMNS)} FROM node_runs WHERE run_id = ANY($1::text[])",
                list({run.partition("\n")[2] for run, _ in keys}),
            )
            for row in rows:
                key = (run_key(row["project"], row["run_id"]), row["span_id"])
                if key in keys:
                    state = NodeState(*tuple(row))
                    if state.status is not None:
                        state.status = NodeStatus(state.status)
                    self._nodes[key] = state
        self._rollups.remember(self.runs, self._nodes)

    def apply(self, event: PreparedEvent, producer_id: str | None = None, producer_seq: int = 0) -> None:
        """Fold one new event (its states must have been loaded; ``event.seq`` set).

        Every row folded from an event is made here, so here a NUL in any of its texts (a log line, an error, a
        node id, an attribute) becomes U+FFFD, as PostgreSQL's text requires: the ledger keeps the event as sent.
        """
        if NUL_ESCAPE in event.body:  # rare: only then is the data walked
            event = dataclasses.replace(event, data=without_nul(event.data))
        sampled_out = event.kind is _SAMPLED_OUT
        if sampled_out:  # a dropped run is counted, never made a run
            day_key = sampled_out_key(event.data, event.project, event.ts)
            self._sampled_out[day_key] = self._sampled_out.get(day_key, 0) + event.data["runs"]
        else:
            run_id = event.run_id
            run_at = run_key(event.project, run_id)  # a run is its project and its id
            run = self.runs[run_at] = fold_run(self.runs.get(run_at), event)
            self._dirty_runs.add(run_at)
            if event.kind in _NODE_KINDS:
                key = (run_at, event.data["span_id"])
                before = self._nodes.get(key)
                first_finish = before is None or before.finished_event_id is None  # the fold may change it in place
                node = self._nodes[key] = fold_node(before, event)
                self._dirty_nodes.add(key)
                self._metrics.observe_attempt(event, node, run, first_finish=first_finish)
            elif event.kind is _NODE_LOGS:
                rows, drop = rows_of_event(
                    run_id=run_id, event_id=event.event_id, project=event.project, data=event.data
                )
                self._logs += rows
                if drop is not None:
                    self._log_drops.append(drop)
            project = event.project or run.project
            for source, text in texts_of_event(event.kind, event.data, plain_floats=event.plain_floats):
                self._texts.append((run_id, project, source, text))
            for name, value in attributes_of_event(event.kind, event.data):
                self._attributes.append((name, value, run_id, project))
        if producer_id is not None:
            self._count_producer(event, producer_id, producer_seq, tail=not sampled_out)

    def count_purged(self, fields: Mapping[str, Any]) -> None:
        """Count an event whose payload was purged for its producer, from its entry's ``fields`` (a rebuild)."""
        counted = purged_producer(fields)
        if counted is not None:
            self._count_producer(*counted, tail=False)

    def _count_producer(
        self, event: FoldEvent | PurgedEvent, producer_id: str, producer_seq: int, *, tail: bool
    ) -> None:
        run_id = event.run_id
        key = (producer_id, namespace_of(event.project))
        counts = self._producers.get(key)
        ts = event.ts if tail else ""
        if counts is None:
            self._producers[key] = [producer_seq, 1, event.project, ts or None, run_id if tail else None]
            return
        counts[0] = max(counts[0], producer_seq)
        counts[1] += 1
        if tail and (counts[3] is None or (ts, run_id) > (counts[3], counts[4])):
            counts[3], counts[4] = ts, run_id

    async def flush(self) -> None:
        """Write every changed row (inside the caller's transaction)."""
        conn = self._conn
        moved = self._rollups.moved_runs(self.runs, self._dirty_runs)
        if moved:  # rare: a run's workflow set after some of its attempts were stored (its run_started came late)
            fresh = {k: n for k, n in (await _load_pg_nodes(conn, moved)).items() if k not in self._nodes}
            self._nodes.update(fresh)
            self._rollups.remember({}, fresh)
        added, removed = self._rollups.changes(self.runs, self._nodes, self._dirty_runs, self._dirty_nodes, moved=moved)
        await apply_pg_facts(conn, added=added, removed=removed, extremes=False)
        if self._dirty_runs:
            await save_pg_runs(conn, [self.runs[r] for r in sorted(self._dirty_runs)])
        if self._dirty_nodes:
            await save_pg_nodes(conn, [self._nodes[k] for k in sorted(self._dirty_nodes)])
        if removed[0] or removed[1]:  # the rows they left find their min and max in the runs as now saved
            await exact_pg_extremes(conn, removed)
        if self._producers:
            await conn.executemany(_SAVE_PRODUCERS, [(p, *c) for (p, _), c in sorted(self._producers.items())])
        if self._logs or self._log_drops:
            await append_pg_logs(conn, self._logs, self._log_drops)
        if self._sampled_out:
            await conn.executemany(_SAVE_SAMPLED_OUT, [(*key, runs) for key, runs in sorted(self._sampled_out.items())])
        await save_pg_texts(conn, self._texts)
        await save_pg_attributes(conn, self._attributes)
        await add_pg_custom_metrics(conn, self._metrics.take())
        self._texts.clear()
        self._attributes.clear()
        self._dirty_runs.clear()
        self._dirty_nodes.clear()
        self._producers.clear()
        self._logs.clear()
        self._log_drops.clear()
        self._sampled_out.clear()

    def forget(self) -> None:
        """Drop the loaded states (rebuild calls this between chunks to bound memory)."""
        self.runs.clear()
        self._nodes.clear()
        self._rollups = RollupTracker()


async def clear_for_refold(conn: asyncpg.Connection) -> None:
    """Before a rebuild refolds the ledger (with the runs still stored): take their finished runs and attempts out
    of the error groups and statistics (what purged runs added stays), and empty what the fold fills again: the
    search text (but OTLP log lines', which are not in the ledger), run attributes and custom metric totals."""
    await retract_pg_stored(conn)
    await conn.execute("DELETE FROM search_text WHERE source <> $1", SearchSource.LOG_OTLP)
    await conn.execute("DELETE FROM run_attributes")
    await conn.execute("DELETE FROM custom_metrics")
