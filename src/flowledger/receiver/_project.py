"""Applying folded events to the projection tables of one SQLite connection.

Used by ingest (new events of a batch) and by rebuild (every ledger event,
in chunks): load the states the events touch, fold, write the changed rows
back with ``executemany``. The caller owns the transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from operator import attrgetter
from typing import Any, Final

import aiosqlite

from flowledger._wire import EventKind, NodeStatus, RunStatus
from flowledger.receiver._fold import (
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

_payload_encoder: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_run_row: Final = attrgetter(*RUN_COLUMNS)
_node_row: Final = attrgetter(*NODE_COLUMNS)
_NODE_KINDS: Final = frozenset({EventKind.NODE_STARTED, EventKind.NODE_FINISHED})

_SAVE_RUNS: Final = (
    f"INSERT OR REPLACE INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))})"
)
_SAVE_NODES: Final = (
    f"INSERT OR REPLACE INTO node_runs ({', '.join(NODE_COLUMNS)}) VALUES ({', '.join('?' * len(NODE_COLUMNS))})"
)


def _newer(column: str, key: str, table: str) -> str:
    return f"CASE WHEN excluded.{key} > coalesce({table}.{key}, '') THEN excluded.{column} ELSE {table}.{column} END"


_SAVE_NODE_PAYLOADS: Final = f"""
INSERT INTO node_payloads (run_id, span_id, input, input_key, output, output_key, error_stack)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id, span_id) DO UPDATE SET
    input = {_newer("input", "input_key", "node_payloads")},
    input_key = {_newer("input_key", "input_key", "node_payloads")},
    output = {_newer("output", "output_key", "node_payloads")},
    error_stack = {_newer("error_stack", "output_key", "node_payloads")},
    output_key = {_newer("output_key", "output_key", "node_payloads")}
"""
_SAVE_RUN_PAYLOADS: Final = f"""
INSERT INTO run_payloads (run_id, input, input_key, output, output_key, attributes)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id) DO UPDATE SET
    input = {_newer("input", "input_key", "run_payloads")},
    attributes = {_newer("attributes", "input_key", "run_payloads")},
    input_key = {_newer("input_key", "input_key", "run_payloads")},
    output = {_newer("output", "output_key", "run_payloads")},
    output_key = {_newer("output_key", "output_key", "run_payloads")}
"""
_SAVE_PRODUCERS: Final = """
INSERT INTO producers (producer_id, max_seq, events) VALUES (?, ?, ?)
ON CONFLICT (producer_id) DO UPDATE SET
    max_seq = max(producers.max_seq, excluded.max_seq),
    events = producers.events + excluded.events
"""


def _json(value: Any) -> str:
    return _payload_encoder.encode(value)


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
    """The stored states of the given (run_id, span_id) attempts."""
    wanted = list(keys)
    found: dict[tuple[str, str], NodeState] = {}
    half = _CHUNK // 2
    for start in range(0, len(wanted), half):
        part = wanted[start : start + half]
        values = ", ".join("(?, ?)" for _ in part)
        params = [x for key in part for x in key]
        sql = f"SELECT {', '.join(NODE_COLUMNS)} FROM node_runs WHERE (run_id, span_id) IN (VALUES {values})"
        for row in await conn.execute_fetchall(sql, params):
            state = node_from_row(row)
            found[(state.run_id, state.span_id)] = state
    return found


async def save_runs(conn: aiosqlite.Connection, runs: Iterable[RunState]) -> None:
    """Write run states back (whole rows)."""
    await conn.executemany(_SAVE_RUNS, [_run_row(run) for run in runs])


class Projector:
    """Folds one batch of events into the projections of ``conn``."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self.runs: dict[str, RunState] = {}
        self._nodes: dict[tuple[str, str], NodeState] = {}
        self._dirty_runs: set[str] = set()
        self._dirty_nodes: set[tuple[str, str]] = set()
        self._node_payloads: list[tuple[Any, ...]] = []
        self._run_payloads: list[tuple[Any, ...]] = []
        self._producers: dict[str, list[int]] = {}

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
        """Fold one new event (its states must have been loaded)."""
        run_id = event.run_id
        self.runs[run_id] = fold_run(self.runs.get(run_id), event)
        self._dirty_runs.add(run_id)
        kind = event.kind
        data = event.data
        key = event.event_id
        if kind in _NODE_KINDS:
            node_key = (run_id, data["span_id"])
            self._nodes[node_key] = fold_node(self._nodes.get(node_key), event)
            self._dirty_nodes.add(node_key)
            has_input = "input" in data
            if kind is EventKind.NODE_FINISHED:
                error = data.get("error") or {}
                self._node_payloads.append(
                    (
                        run_id,
                        node_key[1],
                        _json(data["input"]) if has_input else None,
                        "2:" + key if has_input else None,
                        _json(data["output"]) if "output" in data else None,
                        "2:" + key,
                        error.get("stack"),
                    )
                )
            elif has_input:
                self._node_payloads.append((run_id, node_key[1], _json(data["input"]), "1:" + key, None, None, None))
        elif kind is EventKind.RUN_STARTED:
            trigger = _json(data["trigger_data"]) if "trigger_data" in data else None
            attributes = _json(data["attributes"]) if "attributes" in data else None
            self._run_payloads.append((run_id, trigger, "1:" + key, None, None, attributes))
        elif kind is EventKind.RUN_FINISHED and "output" in data:
            self._run_payloads.append((run_id, None, None, _json(data["output"]), "2:" + key, None))
        if producer_id is not None:
            counts = self._producers.get(producer_id)
            if counts is None:
                self._producers[producer_id] = [producer_seq, 1]
            else:
                if producer_seq > counts[0]:
                    counts[0] = producer_seq
                counts[1] += 1

    async def flush(self) -> None:
        """Write every changed row (inside the caller's transaction)."""
        conn = self._conn
        if self._dirty_runs:
            await conn.executemany(_SAVE_RUNS, [_run_row(self.runs[r]) for r in self._dirty_runs])
        if self._dirty_nodes:
            await conn.executemany(_SAVE_NODES, [_node_row(self._nodes[k]) for k in self._dirty_nodes])
        if self._node_payloads:
            await conn.executemany(_SAVE_NODE_PAYLOADS, self._node_payloads)
        if self._run_payloads:
            await conn.executemany(_SAVE_RUN_PAYLOADS, self._run_payloads)
        if self._producers:
            await conn.executemany(_SAVE_PRODUCERS, [(p, c[0], c[1]) for p, c in self._producers.items()])
        self._dirty_runs.clear()
        self._dirty_nodes.clear()
        self._node_payloads.clear()
        self._run_payloads.clear()
        self._producers.clear()

    def forget(self) -> None:
        """Drop the loaded states (rebuild calls this between chunks to bound memory)."""
        self.runs.clear()
        self._nodes.clear()
