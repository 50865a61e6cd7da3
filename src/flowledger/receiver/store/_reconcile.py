"""Reconciliation: the projection rows of some runs compared with a fresh fold of their ledger events.

A check reads a chunk of runs' stored events (by ``ledger_by_run``), folds
them with the same state machine ingest and rebuild use
(:func:`~._fold.fold_run`, :func:`~._fold.fold_node`, events rebuilt by
:func:`~._rebuild.event_from_body`), and compares the result with the stored
``runs`` and ``node_runs`` rows column by column. Nothing is written unless
asked to repair: then the drifted runs' rows are replaced by the folded ones
in the same transaction.

What is not drift: the sweeper's ``stuck`` over a folded ``running`` (it is
not in the ledger), and purged runs (their entries have no payload left to
fold, and their rows are gone, so both sides are empty).

Which runs a check covers is a :class:`~._integrity.ReconcileScope`: named
runs, the runs of the newest ledger entries, and a slice of every run id in
order (the whole keyspace is walked by keyset over the ledger's, the runs'
and the attempts' run ids, a chunk at a time, so memory and each
transaction stay bounded). An engine gives the few statements that differ
as a :class:`ReconcileIO`; the fold, the comparison and the walk are shared.

A scope with a project (an API key's) reads that project's rows only, in
every statement: the walk, its ``next`` and every count (runs checked,
events folded) see nothing of another project, not even which run ids it
uses. Without one, every project's runs are checked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from operator import attrgetter
from typing import Any, Final, Protocol

import aiosqlite

from flowledger._wire import EventKind, RunStatus
from flowledger.receiver.store._bulk import insert_rows
from flowledger.receiver.store._entry import LEDGER_PROJECT, PURGE_KIND
from flowledger.receiver.store._fold import NODE_COLUMNS, RUN_COLUMNS, NodeState, RunState, fold_node, fold_run
from flowledger.receiver.store._integrity import DriftKind, ReconcileReport, ReconcileScope
from flowledger.receiver.store._namespace import run_key
from flowledger.receiver.store._projector import node_from_row, run_from_row, save_runs
from flowledger.receiver.store._rebuild import event_from_body

__all__ = ["RECONCILE_CHUNK_RUNS", "SQLITE_IO", "ReconcileIO", "fold_ledger_rows", "reconcile"]

_NOT_FOLDED: Final = frozenset({PURGE_KIND, EventKind.RUN_SAMPLED_OUT.value})
"""Ledger kinds the projections never fold into a run: purge entries, and the count of runs sampling dropped."""

RECONCILE_CHUNK_RUNS: Final = 200
"""Runs folded and compared per transaction."""

_run_row: Final = attrgetter(*RUN_COLUMNS)
_node_row: Final = attrgetter(*NODE_COLUMNS)
_NODE_KINDS: Final = frozenset({"node_started", "node_finished"})
_SAVE_NODES: Final = f"INSERT INTO node_runs ({', '.join(NODE_COLUMNS)})"

Transaction = Callable[[], AbstractAsyncContextManager[Any]]
"""Opens one transaction and yields its connection (a read snapshot, or the writer's when repairing)."""


def _marks(ids: Sequence[str]) -> str:
    return ", ".join("?" * len(ids))


def fold_ledger_rows(
    rows: Iterable[Sequence[Any]],
) -> tuple[dict[str, RunState], dict[tuple[str, str], NodeState], int]:
    """The runs' and attempts' states folded from ledger rows ``(seq, kind, body)`` in seq order, and how many.

    Runs are keyed by :func:`~._projector.run_key` (a run is its project and id), attempts by that and their span.
    """
    runs: dict[str, RunState] = {}
    nodes: dict[tuple[str, str], NodeState] = {}
    folded = 0
    for seq, kind, body in rows:
        if body is None or kind in _NOT_FOLDED:  # purged: nothing left to fold; sampled out: never a run
            continue
        event = event_from_body(body, int(seq))
        folded += 1
        run = run_key(event.project, event.run_id)
        runs[run] = fold_run(runs.get(run), event)
        if event.kind in _NODE_KINDS:
            key = (run, event.data["span_id"])
            nodes[key] = fold_node(nodes.get(key), event)
    return runs, nodes, folded


def _of_project(column: str, project: str | None) -> tuple[str, list[str]]:
    """SQL (``?``) keeping the rows of ``project`` only by their namespace ``column``, or nothing for no project."""
    return ("", []) if project is None else (f" AND {column} = ?", [project])


async def _stored(
    conn: aiosqlite.Connection, run_ids: Sequence[str], project: str | None
) -> tuple[dict[str, RunState], dict[tuple[str, str], NodeState]]:
    """The runs' and attempts' rows as the projection holds them (``project``'s only, when given)."""
    marks = _marks(run_ids)
    mine, params = _of_project("ifnull(project, '')", project)
    runs = {
        run_key(row[1], row[0]): run_from_row(row)
        for row in await conn.execute_fetchall(
            f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE run_id IN ({marks}){mine}", [*run_ids, *params]
        )
    }
    nodes = {
        (run_key(row[-1], row[0]), row[1]): node_from_row(row)
        for row in await conn.execute_fetchall(
            f"SELECT {', '.join(NODE_COLUMNS)} FROM node_runs WHERE run_id IN ({marks}){mine}", [*run_ids, *params]
        )
    }
    return runs, nodes


class ReconcileIO(Protocol):
    """An engine's reads and writes of a reconciliation, each inside the transaction whose connection it is given.

    Each read given a ``project`` reads that project's rows only (an API key's scope); None reads every project's.
    """

    async def head(self, conn: Any) -> int:
        """The ledger's last seq (0 when empty)."""

    async def recent_ids(
        self, conn: Any, after_seq: int, max_events: int, project: str | None
    ) -> tuple[list[str], int]:
        """The runs of ledger entries after ``after_seq`` (the newest ``max_events`` at most), and the head."""

    async def next_ids(self, conn: Any, after: str, limit: int, project: str | None) -> tuple[list[str], str | None]:
        """The next run ids after ``after`` in the ledger, the runs and the attempts, and their common bound."""

    async def ledger_rows(self, conn: Any, run_ids: Sequence[str], project: str | None) -> Iterable[Sequence[Any]]:
        """The runs' ledger rows ``(seq, kind, body)`` in seq order (body None when purged)."""

    async def stored(
        self, conn: Any, run_ids: Sequence[str], project: str | None
    ) -> tuple[dict[str, RunState], dict[tuple[str, str], NodeState]]:
        """The runs' and attempts' rows as the projection holds them."""

    async def replace(
        self, conn: Any, runs_of: Sequence[tuple[str, str]], runs: Sequence[RunState], nodes: Sequence[NodeState]
    ) -> None:
        """Replace the rows of the runs ``runs_of`` names (``(run_id, namespace)`` each) and their attempts by the
        folded ones."""


class _SqliteIO:
    async def head(self, conn: aiosqlite.Connection) -> int:
        head_rows = await conn.execute_fetchall("SELECT coalesce(max(seq), 0) FROM ledger")
        return int(next(iter(head_rows))[0])

    async def recent_ids(
        self, conn: aiosqlite.Connection, after_seq: int, max_events: int, project: str | None
    ) -> tuple[list[str], int]:
        return await _recent_ids(conn, after_seq, max_events, project)

    async def next_ids(
        self, conn: aiosqlite.Connection, after: str, limit: int, project: str | None
    ) -> tuple[list[str], str | None]:
        return await _next_ids(conn, after, limit, project)

    async def ledger_rows(
        self, conn: aiosqlite.Connection, run_ids: Sequence[str], project: str | None
    ) -> Iterable[Sequence[Any]]:
        mine, params = _of_project(LEDGER_PROJECT.format("l."), project)
        return await conn.execute_fetchall(
            "SELECT l.seq, l.kind, p.body FROM ledger l LEFT JOIN payloads p ON p.seq = l.seq "
            f"WHERE l.run_id IN ({_marks(run_ids)}){mine} ORDER BY l.seq",
            [*run_ids, *params],
        )

    async def stored(
        self, conn: aiosqlite.Connection, run_ids: Sequence[str], project: str | None
    ) -> tuple[dict[str, RunState], dict[tuple[str, str], NodeState]]:
        return await _stored(conn, run_ids, project)

    async def replace(
        self,
        conn: aiosqlite.Connection,
        runs_of: Sequence[tuple[str, str]],
        runs: Sequence[RunState],
        nodes: Sequence[NodeState],
    ) -> None:
        pairs = ", ".join("(?, ?)" for _ in runs_of)
        params = [value for pair in runs_of for value in pair]
        for table in ("node_runs", "runs"):
            await conn.execute(f"DELETE FROM {table} WHERE (run_id, ifnull(project, '')) IN (VALUES {pairs})", params)
        await save_runs(conn, runs)
        await insert_rows(conn, _SAVE_NODES, [_node_row(node) for node in nodes], width=len(NODE_COLUMNS))


SQLITE_IO: Final = _SqliteIO()
"""The SQLite engine's reads and writes of a reconciliation."""


def _verdict(
    folded: RunState | NodeState | None, stored: RunState | NodeState | None, row: Callable[[object], object]
) -> DriftKind | None:
    """How one folded row and its stored row disagree, or None when they match."""
    if stored is None:
        return None if folded is None else DriftKind.MISSING_IN_PROJECTION
    if folded is None:
        return DriftKind.MISSING_IN_LEDGER
    if folded.status != stored.status:
        return DriftKind.STATUS_MISMATCH
    if row(folded) != row(stored):
        return DriftKind.FIELD_MISMATCH
    return None


def _by_run(nodes: Iterable[NodeState]) -> dict[str, dict[str, NodeState]]:
    out: dict[str, dict[str, NodeState]] = {}
    for node in nodes:
        out.setdefault(run_key(node.project, node.run_id), {})[node.span_id] = node
    return out


async def _check_chunk(
    io: ReconcileIO,
    conn: Any,
    run_ids: Sequence[str],
    report: ReconcileReport,
    *,
    project: str | None,
    repair: bool,
) -> None:
    # With a project, the engine reads its rows only: no other project's event is folded or counted.
    folded_runs, folded_node_map, events = fold_ledger_rows(await io.ledger_rows(conn, run_ids, project))
    stored_by_id, stored_node_map = await io.stored(conn, run_ids, project)
    # Every project's run of these ids, keyed by project and id (whatever key the engine returned them by).
    stored_runs = {run_key(run.project, run.run_id): run for run in stored_by_id.values()}
    folded_nodes, stored_nodes = _by_run(folded_node_map.values()), _by_run(stored_node_map.values())
    report.events_folded += events
    drifted: list[str] = []  # run keys (run_key): project and id
    keys = sorted(folded_runs.keys() | stored_runs.keys() | stored_nodes.keys())
    for key in keys:
        run_id = key.partition("\n")[2]
        folded, stored = folded_runs.get(key), stored_runs.get(key)
        run_nodes, kept_nodes = folded_nodes.get(key, {}), stored_nodes.get(key, {})
        if folded is None and stored is None and not kept_nodes:
            continue  # nothing to fold (never stored, or purged) and nothing projected
        if project is not None and project not in {r.project for r in (folded, stored) if r is not None}:
            continue
        swept = stored is not None and stored.status is RunStatus.STUCK
        if folded is not None and stored is not None and swept and folded.status is RunStatus.RUNNING:
            # The sweeper's verdict is not in the ledger: not drift.
            folded.status, folded.stuck_reason = RunStatus.STUCK, stored.stuck_reason
        report.runs_checked += 1
        found = False
        kind = _verdict(folded, stored, _run_row)
        if kind is not None:
            found = True
            report.kinds[kind].add(run_id, attempt=False)
        for span in sorted(run_nodes.keys() | kept_nodes.keys()):
            node_kind = _verdict(run_nodes.get(span), kept_nodes.get(span), _node_row)
            if node_kind is not None:
                found = True
                report.kinds[node_kind].add(f"{run_id}/{span}", attempt=True)
        if found:
            drifted.append(key)
            report.note_drifted(run_id)
    if repair and drifted:
        # Only the drifted runs (by project and id) are replaced by their fold: another project's run of the
        # same id is left as it is.
        runs = [folded_runs[key] for key in drifted if key in folded_runs]
        nodes = [node for key in drifted for node in folded_nodes.get(key, {}).values()]
        runs_of = [(key.partition("\n")[2], key.partition("\n")[0]) for key in drifted]
        await io.replace(conn, runs_of, runs, nodes)
        report.repaired += len(drifted)


_NEXT_IDS: Final = (
    ("ledger", "DISTINCT run_id", LEDGER_PROJECT.format("")),
    ("runs", "run_id", "ifnull(project, '')"),
    ("node_runs", "DISTINCT run_id", "ifnull(project, '')"),
)
"""Where the walk finds run ids: each table, what it selects, and its namespace (for a project's walk); the
namespace is the second column of each table's run-id index, so a project's walk reads that index alone."""


async def _next_ids(
    conn: aiosqlite.Connection, after: str, limit: int, project: str | None
) -> tuple[list[str], str | None]:
    """The next run ids after ``after`` in the ledger, the runs and the attempts (``project``'s only, when
    given), up to a common bound.

    Returns the ids and the bound (None when every source ran out: the sweep is at its end).
    """
    found: set[str] = set()
    bound: str | None = None
    exhausted = True
    for table, select, namespace in _NEXT_IDS:
        mine, params = _of_project(namespace, project)
        sql = f"SELECT {select} FROM {table} WHERE run_id > ?{mine} ORDER BY run_id LIMIT ?"
        ids = [str(row[0]) for row in await conn.execute_fetchall(sql, (after, *params, limit))]
        found.update(ids)
        if len(ids) == limit:
            exhausted = False
            bound = ids[-1] if bound is None else min(bound, ids[-1])
    if exhausted:
        return sorted(found), None
    assert bound is not None
    return sorted(i for i in found if i <= bound), bound


async def _recent_ids(
    conn: aiosqlite.Connection, after_seq: int, max_events: int, project: str | None
) -> tuple[list[str], int]:
    """The runs of ledger entries after ``after_seq`` (the newest ``max_events`` at most; ``project``'s only,
    when given), and the head."""
    head_rows = await conn.execute_fetchall("SELECT coalesce(max(seq), 0) FROM ledger")
    head = int(next(iter(head_rows))[0])
    start = max(after_seq, head - max_events)
    mine, params = _of_project(LEDGER_PROJECT.format(""), project)
    # A range of the primary key, deduplicated here: with DISTINCT, SQLite walks the whole run-id index.
    rows = await conn.execute_fetchall(
        f"SELECT run_id FROM ledger WHERE seq > ? AND kind != ?{mine}", (start, PURGE_KIND, *params)
    )
    return list(dict.fromkeys(str(row[0]) for row in rows)), head


async def reconcile(
    transaction: Transaction, scope: ReconcileScope, *, repair: bool = False, io: ReconcileIO = SQLITE_IO
) -> ReconcileReport:
    """Check (and with ``repair`` rewrite) the runs of ``scope``, one transaction per chunk of runs."""
    report = ReconcileReport()
    named: list[str] = list(dict.fromkeys(scope.run_ids))
    async with transaction() as conn:
        report.ledger_seq = await io.head(conn)
        if scope.recent_after_seq is not None and scope.recent_max_events > 0:
            recent, report.ledger_seq = await io.recent_ids(
                conn, scope.recent_after_seq, scope.recent_max_events, scope.project
            )
            named += recent
    named = list(dict.fromkeys(named))
    seen = set(named)
    for start in range(0, len(named), RECONCILE_CHUNK_RUNS):
        async with transaction() as conn:
            chunk = named[start : start + RECONCILE_CHUNK_RUNS]
            await _check_chunk(io, conn, chunk, report, project=scope.project, repair=repair)
    if scope.sweep_from is None:
        return report
    after: str | None = scope.sweep_from
    left = scope.sweep_runs
    while after is not None and (left is None or left > 0):
        size = RECONCILE_CHUNK_RUNS if left is None else min(RECONCILE_CHUNK_RUNS, left)
        async with transaction() as conn:
            ids, bound = await io.next_ids(conn, after, size, scope.project)
            fresh = [i for i in ids if i not in seen]
            if fresh:
                await _check_chunk(io, conn, fresh, report, project=scope.project, repair=repair)
        after = bound
        if left is not None:
            left -= len(ids)
    report.sweep_next = after
    return report
