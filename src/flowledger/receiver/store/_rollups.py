"""Projections kept as running sums of finished runs and attempts: error groups (:mod:`._error_groups`) and
statistics (:mod:`._stats`).

The projector folds events into run and attempt states; this module sees each
state as it was when loaded and as it is when written, reduces both to their
*facts* (what the sums read: status, times, cost, error), and hands the
difference to the sums: the facts of a state that changed are taken out and
the new ones put in. A state that is not finished has no facts. So the sums
follow every turn of the fold (a late ``run_finished`` that wins a tiebreak
moves its run from one status to another) and a replay changes nothing.

An attempt's facts also read its run's identity (:class:`RunIdentity`: project
and workflow). Events may come in any order, so a ``run_started`` can set the
workflow after the run's attempts were counted (under none): when a commit
group changes a run's identity, the facts of *all* its finished attempts move
(:meth:`RollupTracker.moved_runs` names those runs; the projector loads their
attempts, the tracker takes each out under the identity it was counted with
and puts it in under the new one). That costs a read only then: in order, a
run's identity is set by its first event.

A rebuild first takes every stored run and attempt out of the sums
(:func:`retract_stored`), then refolds them in; purged runs are no longer
stored, so what they added stays: error counts and statistics survive purges.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, Final, NamedTuple

import aiosqlite

from flowledger._wire import NodeStatus, RunStatus
from flowledger.receiver.store._error_groups import Failure, record_failures, record_failures_sync
from flowledger.receiver.store._fold import NodeState, RunState
from flowledger.receiver.store._on_thread import WriteConnection
from flowledger.receiver.store._stats import Contribution, StatsBy, record_contributions, record_contributions_sync

__all__ = [
    "NODE_FACT_SQL",
    "RUN_FACT_SQL",
    "FactChanges",
    "NodeFacts",
    "RollupTracker",
    "RunFacts",
    "RunIdentity",
    "after_node",
    "after_run",
    "backfill_rollups",
    "fact_changes",
    "retract_stored",
]

_FINISHED_RUN: Final = frozenset({RunStatus.SUCCEEDED.value, RunStatus.FAILED.value, RunStatus.ABORTED.value})
_FAILED_RUN: Final = frozenset({RunStatus.FAILED.value, RunStatus.ABORTED.value})
_FINISHED_NODE: Final = frozenset({NodeStatus.SUCCEEDED.value, NodeStatus.FAILED.value, NodeStatus.SKIPPED.value})
_RETRACT_CHUNK: Final = 5_000


class RunFacts(NamedTuple):
    """What the sums read from a finished run."""

    run_id: str
    project: str | None
    workflow_id: str | None
    status: str
    started_at: str | None
    completed_at: str | None
    duration_ms: float | None
    cost_usd: float | None
    error_type: str | None
    error_message: str | None
    error_node_id: str | None
    agent_id: str | None

    def contributions(self) -> list[Contribution]:
        """What the run adds to the statistics: one row per dimension."""
        if self.started_at is None:
            return []
        project = self.project or ""
        return [
            Contribution(dim, key or "", project, self.status, self.started_at, self.cost_usd, self.duration_ms)
            for dim, key in (
                (StatsBy.WORKFLOW, self.workflow_id),
                (StatsBy.PROJECT, self.project),
                (StatsBy.AGENT, self.agent_id),
            )
        ]

    def failure(self) -> Failure | None:
        """The failure this run counts for itself: failed or aborted outside any node."""
        if self.status not in _FAILED_RUN or self.error_node_id is not None:
            return None
        return Failure.of(
            project=self.project,
            error_type=self.error_type,
            message=self.error_message,
            node_id=None,
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            at=self.completed_at or self.started_at or "",
        )


class NodeFacts(NamedTuple):
    """What the sums read from a finished node attempt (project and workflow are its run's)."""

    run_id: str
    project: str | None
    workflow_id: str | None
    node_id: str | None
    status: str
    started_at: str | None
    completed_at: str | None
    duration_ms: float | None
    cost_usd: float | None
    error_type: str | None
    error_message: str | None

    def contributions(self) -> list[Contribution]:
        """What the attempt adds to the statistics: its node's row (``workflow_id/node_id``)."""
        if self.started_at is None:
            return []
        key = f"{self.workflow_id or ''}/{self.node_id or ''}"
        return [
            Contribution(
                StatsBy.NODE,
                key,
                self.project or "",
                self.status,
                self.started_at,
                self.cost_usd,
                self.duration_ms,
                self.node_id,
            )
        ]

    def failure(self) -> Failure | None:
        """The failure this attempt counts: a failed attempt."""
        if self.status != NodeStatus.FAILED.value:
            return None
        return Failure.of(
            project=self.project,
            error_type=self.error_type,
            message=self.error_message,
            node_id=self.node_id,
            workflow_id=self.workflow_id,
            run_id=self.run_id,
            at=self.completed_at or self.started_at or "",
        )


def run_facts(run: RunState | None) -> RunFacts | None:
    """The facts of a run state; None while it is not finished."""
    if run is None or not run.seen:
        return None
    status = run.status._value_
    if status not in _FINISHED_RUN:
        return None
    return RunFacts(
        run.run_id,
        run.project,
        run.workflow_id,
        status,
        run.started_at,
        run.completed_at,
        run.duration_ms,
        run.cost_usd,
        run.error_type,
        run.error_message,
        run.error_node_id,
        run.agent_id,
    )


class RunIdentity(NamedTuple):
    """What an attempt's facts read from its run."""

    project: str | None
    workflow_id: str | None


def run_identity(run: RunState) -> RunIdentity:
    """The identity a run gives its attempts' facts."""
    return RunIdentity(run.project, run.workflow_id)


def node_facts(node: NodeState | None, run: RunState | RunIdentity | None) -> NodeFacts | None:
    """The facts of an attempt state, with its run's identity; None while it is not finished."""
    if node is None or node.status is None:
        return None
    status = node.status._value_
    if status not in _FINISHED_NODE:
        return None
    return NodeFacts(
        node.run_id,
        None if run is None else run.project,
        None if run is None else run.workflow_id,
        node.node_id,
        status,
        node.started_at,
        node.completed_at,
        node.duration_ms,
        node.cost_usd,
        node.error_type,
        node.error_message,
    )


class RollupTracker:
    """The facts of the states one projector loaded, and the sums' updates when it writes them back."""

    def __init__(self) -> None:
        self._runs: dict[str, RunFacts | None] = {}
        self._identities: dict[str, RunIdentity] = {}
        """The identity each stored run's attempts were counted with."""
        self._nodes: dict[tuple[str, str], NodeFacts | None] = {}

    def remember(self, runs: Mapping[str, RunState], nodes: Mapping[tuple[str, str], NodeState]) -> None:
        """Note the facts of states just loaded (before any event is folded into them). Runs are keyed by
        :func:`~._namespace.run_key` (a run is its project and its id), attempts by (that key, span id); an
        attempt's facts take the identity its run was remembered with (the one the sums counted it under)."""
        for key, run in runs.items():
            if key not in self._runs:
                self._runs[key] = run_facts(run)
                self._identities[key] = run_identity(run)
        for place, node in nodes.items():
            if place not in self._nodes:
                self._nodes[place] = node_facts(node, self._identities.get(place[0]))

    def moved_runs(self, runs: Mapping[str, RunState], dirty_runs: Iterable[str]) -> set[str]:
        """The written runs whose identity changed since it was remembered: every finished attempt of theirs must
        be loaded (and remembered) before :meth:`changes`, which moves them all to the new identity. Runs that
        were never stored have no attempts stored either, and are not named."""
        identities = self._identities
        moved: set[str] = set()
        for key in dirty_runs:
            before = identities.get(key)
            if before is not None:
                run = runs[key]
                if before.workflow_id != run.workflow_id or before.project != run.project:
                    moved.add(key)
        return moved

    async def flush(
        self,
        conn: WriteConnection,
        runs: Mapping[str, RunState],
        nodes: Mapping[tuple[str, str], NodeState],
        dirty_runs: Collection[str],
        dirty_nodes: Iterable[tuple[str, str]],
        *,
        moved: Collection[str] | None = None,
    ) -> None:
        """Move the sums by the changed facts of the written states (inside the caller's transaction)."""
        added, removed = self.changes(runs, nodes, dirty_runs, dirty_nodes, moved=moved)
        await apply_facts(conn, added=added, removed=removed)

    def changes(
        self,
        runs: Mapping[str, RunState],
        nodes: Mapping[tuple[str, str], NodeState],
        dirty_runs: Collection[str],
        dirty_nodes: Iterable[tuple[str, str]],
        *,
        moved: Collection[str] | None = None,
    ) -> tuple[tuple[list[RunFacts], list[NodeFacts]], tuple[list[RunFacts], list[NodeFacts]]]:
        """The facts the written states add and take away, ``(added, removed)``, each (runs, attempts); from now on
        the written states' facts are the ones remembered. Engine-neutral: each engine writes them to its sums.

        The attempts of runs whose identity changed (``moved``: :meth:`moved_runs`, which the caller may have
        asked already) are recomputed whether written or not: ``nodes`` must then hold all of them."""
        if moved is None:
            moved = self.moved_runs(runs, dirty_runs)
        identities = self._identities
        if moved:
            dirty_nodes = {*dirty_nodes, *(key for key in nodes if key[0] in moved)}
            for run in moved:
                identities[run] = run_identity(runs[run])
        old_runs: list[RunFacts] = []
        new_runs: list[RunFacts] = []
        for run in dirty_runs:
            if run not in identities:  # a new run: its attempts are counted with its identity from now on
                identities[run] = run_identity(runs[run])
            before = self._runs.get(run)
            after = run_facts(runs[run])
            if before != after:
                if before is not None:
                    old_runs.append(before)
                if after is not None:
                    new_runs.append(after)
                self._runs[run] = after
        old_nodes: list[NodeFacts] = []
        new_nodes: list[NodeFacts] = []
        for key in dirty_nodes:
            before_node = self._nodes.get(key)
            after_node = node_facts(nodes[key], runs.get(key[0]))
            if before_node != after_node:
                if before_node is not None:
                    old_nodes.append(before_node)
                if after_node is not None:
                    new_nodes.append(after_node)
                self._nodes[key] = after_node
        return (new_runs, new_nodes), (old_runs, old_nodes)


class FactChanges(NamedTuple):
    """What facts added and taken away do to the sums: failures for the error groups, contributions for the
    statistics."""

    failures_added: list[Failure]
    failures_removed: list[Failure]
    contributions_added: list[Contribution]
    contributions_removed: list[Contribution]


def fact_changes(
    *, added: tuple[list[RunFacts], list[NodeFacts]], removed: tuple[list[RunFacts], list[NodeFacts]]
) -> FactChanges:
    """The failures and contributions of facts added and taken away (engine-neutral)."""
    gained = [f for f in (*(r.failure() for r in added[0]), *(n.failure() for n in added[1])) if f is not None]
    lost = [f for f in (*(r.failure() for r in removed[0]), *(n.failure() for n in removed[1])) if f is not None]
    return FactChanges(gained, lost, _contributions(added), _contributions(removed))


async def apply_facts(
    conn: WriteConnection,
    *,
    added: tuple[list[RunFacts], list[NodeFacts]],
    removed: tuple[list[RunFacts], list[NodeFacts]],
    extremes: bool = True,
) -> None:
    """Add and take away facts in every sum; ``extremes``: find the statistics' min and max of the rows facts leave
    again (:func:`~._stats.exact_extremes`)."""
    changes = fact_changes(added=added, removed=removed)
    await record_failures(conn, changes.failures_added, changes.failures_removed)
    await record_contributions(conn, changes.contributions_added, changes.contributions_removed, extremes=extremes)


def _contributions(facts: tuple[list[RunFacts], list[NodeFacts]]) -> list[Contribution]:
    runs, nodes = facts
    return [c for r in runs for c in r.contributions()] + [c for n in nodes for c in n.contributions()]


_RUN_FACT_SQL: Final = (
    "SELECT run_id, project, workflow_id, status, started_at, completed_at, duration_ms, cost_usd, "
    "error_type, error_message, error_node_id, agent_id FROM main.runs WHERE status IN ({}) "
    "AND (run_id, ifnull(project, '')) > (?, ?) ORDER BY run_id, ifnull(project, '') LIMIT ?"
).format(", ".join(f"'{s}'" for s in sorted(_FINISHED_RUN)))
_NODE_FACT_SQL: Final = (
    "SELECT n.run_id, r.project, r.workflow_id, n.node_id, n.status, n.started_at, n.completed_at, n.duration_ms, "
    "n.cost_usd, n.error_type, n.error_message, n.span_id FROM main.node_runs n LEFT JOIN main.runs r "
    "ON r.run_id = n.run_id AND ifnull(r.project, '') = ifnull(n.project, '') WHERE n.status IN ({}) "
    "AND (n.run_id, ifnull(n.project, ''), n.span_id) > (?, ?, ?) ORDER BY n.run_id, ifnull(n.project, ''), n.span_id "
    "LIMIT ?"
).format(", ".join(f"'{s}'" for s in sorted(_FINISHED_NODE)))

_BACKFILL_RUN_SQL: Final = (
    "SELECT run_id, project, workflow_id, status, started_at, completed_at, duration_ms, cost_usd, "
    "error_type, error_message, error_node_id, agent_id FROM main.runs WHERE status IN ({}) AND run_id > ? "
    "ORDER BY run_id LIMIT ?"
).format(", ".join(f"'{s}'" for s in sorted(_FINISHED_RUN)))
_BACKFILL_NODE_SQL: Final = (
    "SELECT n.run_id, r.project, r.workflow_id, n.node_id, n.status, n.started_at, n.completed_at, n.duration_ms, "
    "n.cost_usd, n.error_type, n.error_message, n.span_id FROM main.node_runs n LEFT JOIN main.runs r "
    "ON r.run_id = n.run_id WHERE n.status IN ({}) AND (n.run_id, n.span_id) > (?, ?) "
    "ORDER BY n.run_id, n.span_id LIMIT ?"
).format(", ".join(f"'{s}'" for s in sorted(_FINISHED_NODE)))
"""The facts read by the migration creating the sums, in the schema of its version: a run id named one run then
(ids became per project in a later version), and attempts had no project of their own."""


RUN_FACT_SQL: Final = _RUN_FACT_SQL
"""The finished runs' facts after a run (``?``: its id and namespace), a chunk (``?``) at a time, in run order (SQLite's
spelling: ``ifnull``)."""
NODE_FACT_SQL: Final = _NODE_FACT_SQL
"""The finished attempts' facts (and span id) after a (run id, namespace, span id), a chunk at a time, each with its
own project's run (SQLite's spelling: ``ifnull``)."""


def after_run(row: Sequence[Any]) -> tuple[str, str]:
    """The place of a row of RUN_FACT_SQL, to read on after it: its run id and namespace."""
    return str(row[0]), row[1] or ""


def after_node(row: Sequence[Any]) -> tuple[str, str, str]:
    """The place of a row of NODE_FACT_SQL, to read on after it: its run id, namespace and span id."""
    return str(row[0]), row[1] or "", str(row[-1])


async def retract_stored(conn: aiosqlite.Connection) -> None:
    """Take every stored finished run and attempt out of the sums (a rebuild then folds them back in)."""
    last = ("", "")
    while True:
        rows = list(await conn.execute_fetchall(_RUN_FACT_SQL, (*last, _RETRACT_CHUNK)))
        if not rows:
            break
        last = after_run(rows[-1])
        await apply_facts(conn, added=([], []), removed=([RunFacts(*row) for row in rows], []), extremes=False)
    last_key = ("", "", "")
    while True:
        rows = list(await conn.execute_fetchall(_NODE_FACT_SQL, (*last_key, _RETRACT_CHUNK)))
        if not rows:
            break
        last_key = after_node(rows[-1])
        await apply_facts(conn, added=([], []), removed=([], [NodeFacts(*row[:-1]) for row in rows]), extremes=False)


def backfill_rollups(conn: sqlite3.Connection) -> None:
    """Add every stored finished run and attempt to the sums (the migration creating them calls this, in the schema
    of its version)."""
    last = ""
    while True:
        rows = conn.execute(_BACKFILL_RUN_SQL, (last, _RETRACT_CHUNK)).fetchall()
        if not rows:
            break
        last = str(rows[-1][0])
        apply_facts_sync(conn, [RunFacts(*row) for row in rows], [])
    last_key = ("", "")
    while True:
        rows = conn.execute(_BACKFILL_NODE_SQL, (*last_key, _RETRACT_CHUNK)).fetchall()
        if not rows:
            break
        last_key = (str(rows[-1][0]), str(rows[-1][-1]))
        apply_facts_sync(conn, [], [NodeFacts(*row[:-1]) for row in rows])


def apply_facts_sync(conn: sqlite3.Connection, runs: list[RunFacts], nodes: list[NodeFacts]) -> None:
    """Add facts to every sum on a plain sqlite3 connection."""
    record_failures_sync(conn, [f for f in (*(r.failure() for r in runs), *(n.failure() for n in nodes)) if f])
    record_contributions_sync(conn, _contributions((runs, nodes)))
