"""Custom metric totals on PostgreSQL: the ``custom_metrics`` rows of :mod:`.._custom_metrics`, added to and read.

What an attempt adds (:class:`~.._custom_metrics.MetricTotals`, fed by the
projector once per attempt), the query's filters and order
(:func:`~.._custom_metrics.custom_metrics_sql`) and the API's shape of a row
are :mod:`.._custom_metrics`'s; only the statements are this engine's: the
batch is added with one ``unnest`` upsert, and a label filter reads the
labels' JSON with ``->>``. A row is keyed by its labels' digest
(``custom_metrics_once``, schema version 21): eight labels of 128 characters
can be longer than an index entry holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from flowledger.receiver.store._custom_metrics import (
    CUSTOM_METRIC_COLUMNS,
    CustomMetricQuery,
    custom_metric_json,
    custom_metrics_sql,
)
from flowledger.receiver.store.postgres._dialect import numbered

if TYPE_CHECKING:
    import asyncpg

__all__ = ["add_pg_custom_metrics", "pg_custom_metrics"]

_TYPES: Final = ("text",) * 6 + ("bigint", "float8", "float8", "float8")
_ADD: Final = (
    f"INSERT INTO custom_metrics AS m ({', '.join(CUSTOM_METRIC_COLUMNS)}) SELECT * FROM unnest("
    + ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(_TYPES))
    + ") ON CONFLICT (project, workflow_id, node_id, name, flowledger_digest(labels), hour) DO UPDATE SET "
    "count = m.count + EXCLUDED.count, sum = m.sum + EXCLUDED.sum, min = least(m.min, EXCLUDED.min), "
    "max = greatest(m.max, EXCLUDED.max)"
)
_LABEL_CLAUSE: Final = "labels::jsonb #>> ?::text[] = ?"
"""A label's value: its key is handed over as a one-element path."""


async def add_pg_custom_metrics(conn: asyncpg.Connection, rows: Sequence[Sequence[Any]]) -> None:
    """Add a batch's rows (CUSTOM_METRIC_COLUMNS in order, each key once) to the stored ones."""
    if rows:
        await conn.execute(_ADD, *[list(column) for column in zip(*rows, strict=True)])


async def pg_custom_metrics(conn: asyncpg.Connection, query: CustomMetricQuery) -> list[dict[str, Any]]:
    """Rows matching ``query``, newest hour first, each with its ``avg``."""
    sql, args = custom_metrics_sql(query, label_clause=_LABEL_CLAUSE, label_path=lambda key: [key])
    return [custom_metric_json(tuple(row)) for row in await conn.fetch(numbered(sql), *args)]
