"""Custom metrics added up over time: the ``custom_metrics`` projection and its query.

Each ``node_finished`` carries its attempt's metric summaries (``{name,
labels, count, sum, min, max, value}``, see ``docs/wire-format.md``). The
fold adds them into one row per project, workflow, node, name, labels and
UTC hour, with count, sum, min and max: the run and the attempt are never
part of the key, so the table grows with the hours and the distinct label
sets, not with the runs. An attempt's metrics are counted once, from the
first ``node_finished`` of the attempt the receiver folds (a second finish
of the same attempt, a producer's bug, is not counted again).

The node's own ``metrics`` (the API's node field) are read from its
finishing event in the ledger; these rows outlive purges of the runs, and a
rebuild recounts them from the payloads the ledger still holds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiosqlite

from flowledger.receiver.store._bulk import insert_rows
from flowledger.receiver.store._canonical import canonical
from flowledger.receiver.store._fold import FoldEvent, NodeState, RunState
from flowledger.receiver.store._on_thread import WriteConnection
from flowledger.receiver.store._time import hour_of

__all__ = [
    "CUSTOM_METRIC_COLUMNS",
    "CustomMetricQuery",
    "MetricTotals",
    "custom_metric_json",
    "custom_metrics_sql",
    "query_custom_metrics",
]

CUSTOM_METRIC_COLUMNS: Final = (
    "project",
    "workflow_id",
    "node_id",
    "name",
    "labels",
    "hour",
    "count",
    "sum",
    "min",
    "max",
)
"""The columns of ``custom_metrics``, in order."""
_KEY_WIDTH: Final = 6
_SAVE: Final = f"INSERT INTO custom_metrics ({', '.join(CUSTOM_METRIC_COLUMNS)})"
_SAVE_TAIL: Final = """
ON CONFLICT (project, workflow_id, node_id, name, labels, hour) DO UPDATE SET
    count = custom_metrics.count + excluded.count,
    sum = custom_metrics.sum + excluded.sum,
    min = min(custom_metrics.min, excluded.min),
    max = max(custom_metrics.max, excluded.max)
"""
_LABEL_CLAUSE: Final = "labels ->> ? = ?"
MAX_ROWS: Final = 10_000
"""The most rows one query answers."""


class MetricTotals:
    """The additions one batch of events makes to ``custom_metrics``."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, ...], list[Any]] = {}

    def observe(
        self, metrics: Any, *, project: str | None, workflow_id: str | None, node_id: str | None, finished_at: str
    ) -> None:
        """Add the summaries of one attempt (as the wire format has them; validated at ingest)."""
        if not isinstance(metrics, list):
            return
        hour = hour_of(finished_at)
        for entry in metrics:
            key = (
                project or "",
                workflow_id or "",
                node_id or "",
                entry["name"],
                canonical(entry.get("labels") or {}),
                hour,
            )
            row = self._rows.get(key)
            if row is None:
                self._rows[key] = [entry["count"], entry["sum"], entry["min"], entry["max"]]
            else:
                row[0] += entry["count"]
                row[1] += entry["sum"]
                row[2] = min(row[2], entry["min"])
                row[3] = max(row[3], entry["max"])

    def observe_attempt(self, event: FoldEvent, node: NodeState, run: RunState, *, first_finish: bool) -> None:
        """Add an attempt's metrics when ``event`` (just folded into ``node`` of ``run``) carries metrics and is the
        first finish of the attempt the fold took (``first_finish``: the attempt had none before it)."""
        if (
            first_finish
            and node.finished_event_id == event.event_id
            and node.completed_at is not None
            and "metrics" in event.data
        ):
            self.observe(
                event.data["metrics"],
                project=event.project or run.project,
                workflow_id=event.data.get("workflow_id") or run.workflow_id,
                node_id=node.node_id,
                finished_at=node.completed_at,
            )

    def take(self) -> list[tuple[Any, ...]]:
        """The rows observed so far (CUSTOM_METRIC_COLUMNS in order), to be added to the stored ones; forgets them."""
        rows = [(*key, *values) for key, values in self._rows.items()]
        self._rows.clear()
        return rows

    async def flush(self, conn: WriteConnection) -> None:
        """Add what was observed to the table (inside the caller's transaction)."""
        rows = self.take()
        if rows:
            await insert_rows(conn, _SAVE, rows, width=len(CUSTOM_METRIC_COLUMNS), tail=_SAVE_TAIL)


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomMetricQuery:
    """Which rows of ``custom_metrics`` to answer; every filter is optional."""

    name: str | None = None
    workflow_id: str | None = None
    node_id: str | None = None
    project: str | None = None
    since: str | None = None
    """The first hour (a normalised timestamp; rows of the hour it falls in count)."""
    until: str | None = None
    """Rows of hours that start before this instant."""
    labels: Mapping[str, str] | None = None
    """Only rows whose labels include these."""
    limit: int = 1_000


def _json_path(key: str) -> Any:
    return "$." + canonical(key)


def custom_metrics_sql(
    query: CustomMetricQuery, *, label_clause: str = _LABEL_CLAUSE, label_path: Callable[[str], Any] = _json_path
) -> tuple[str, list[Any]]:
    """The SELECT (``?`` parameters) of the rows ``query`` asks for, newest hour first: engine-neutral but for
    ``label_clause``, a condition on ``labels`` with two parameters: the label's path (``label_path`` of its key;
    SQLite's JSON path ``$."key"`` by default) and its value."""
    where: list[str] = []
    args: list[Any] = []
    for column in ("name", "workflow_id", "node_id", "project"):
        value = getattr(query, column)
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if query.since is not None:
        where.append("hour >= ?")
        args.append(hour_of(query.since))
    if query.until is not None:
        where.append("hour < ?")
        args.append(query.until)
    for key, value in (query.labels or {}).items():
        where.append(label_clause)
        args += [label_path(key), value]
    sql = (
        f"SELECT {', '.join(CUSTOM_METRIC_COLUMNS)} FROM custom_metrics"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY hour DESC, workflow_id, node_id, name, labels LIMIT ?"
    )
    args.append(min(max(query.limit, 1), MAX_ROWS))
    return sql, args


def custom_metric_json(row: Sequence[Any]) -> dict[str, Any]:
    """One row (CUSTOM_METRIC_COLUMNS in order) as the API answers it, with its ``avg``."""
    record = dict(zip(CUSTOM_METRIC_COLUMNS, row, strict=True))
    record["project"] = record["project"] or None
    record["labels"] = json.loads(record["labels"])
    record["avg"] = record["sum"] / record["count"]
    return record


async def query_custom_metrics(conn: aiosqlite.Connection, query: CustomMetricQuery) -> list[dict[str, Any]]:
    """Rows of ``custom_metrics`` matching ``query``, newest hour first, each with its ``avg``."""
    sql, args = custom_metrics_sql(query)
    return [custom_metric_json(row) for row in await conn.execute_fetchall(sql, args)]
