"""OTLP metrics on the PostgreSQL engine: the series and points tables of :mod:`.._otlp_metrics`, stored and read.

The series' key, the bounds and the API shape are those of
:mod:`.._otlp_metrics` (``MetricSeries``, ``SERIES_FIELDS``,
``series_json``, ``point_json``); only the statements are this engine's. A
series two receivers create at once is stored once (its key is unique).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from flowledger.receiver.store._otlp_metrics import (
    SERIES_FIELDS,
    MetricPointRow,
    MetricsOutcome,
    point_json,
    series_json,
)
from flowledger.receiver.store.postgres._dialect import text_row, without_nul

if TYPE_CHECKING:
    import asyncpg

__all__ = ["pg_metric_series", "store_pg_metric_points"]

_TYPES: Final = {"temporality": "integer", "monotonic": "boolean"}
"""Series column types other than text (of the table and of the arrays a batch is sent as)."""

_INSERT_SERIES: Final = (
    f"INSERT INTO otlp_metric_series (series_key, {', '.join(SERIES_FIELDS)}) SELECT * FROM unnest($1::text[], "
    + ", ".join(f"${i + 2}::{_TYPES.get(c, 'text')}[]" for i, c in enumerate(SERIES_FIELDS))
    + ") ON CONFLICT (series_key) DO NOTHING"
)
_INSERT_POINTS: Final = (
    "INSERT INTO otlp_metric_points (series_id, time_ns, start_ns, value, data) "
    "SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::float8[], $5::text[]) "
    "ON CONFLICT (series_id, time_ns) DO NOTHING RETURNING 1"
)


async def _series_ids(conn: asyncpg.Connection, keys: list[str]) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT series_key, series_id FROM otlp_metric_series WHERE series_key = ANY($1::text[])", keys
    )
    return {str(key): int(series_id) for key, series_id in rows}


async def store_pg_metric_points(
    conn: asyncpg.Connection, points: Sequence[MetricPointRow], *, max_series: int, max_points: int
) -> MetricsOutcome:
    """Store the points (inside the caller's transaction), their new series first; keep the tables bounded."""
    series_by_key = {without_nul(point.series.key): point.series for point in points}  # as stored
    ids = await _series_ids(conn, list(series_by_key))
    missing = [key for key in series_by_key if key not in ids]
    if missing:
        room = max(0, max_series - int(await conn.fetchval("SELECT count(*) FROM otlp_metric_series")))
        if room:
            new_rows = [text_row(series_by_key[key].values()) for key in missing[:room]]
            await conn.execute(_INSERT_SERIES, *[list(column) for column in zip(*new_rows, strict=True)])
            ids.update(await _series_ids(conn, missing[:room]))
    keys = [without_nul(point.series.key) for point in points]
    rows = [
        text_row((ids[key], point.time_ns, point.start_ns, point.value, point.data))
        for key, point in zip(keys, points, strict=True)
        if key in ids
    ]
    stored = 0
    if rows:
        stored = len(await conn.fetch(_INSERT_POINTS, *[list(column) for column in zip(*rows, strict=True)]))
    if stored:
        await conn.execute(
            "DELETE FROM otlp_metric_points WHERE point_id <= (SELECT max(point_id) FROM otlp_metric_points) - $1",
            max_points,
        )
    return MetricsOutcome(stored=stored, duplicates=len(rows) - stored, over_series_limit=len(points) - len(rows))


async def pg_metric_series(
    conn: asyncpg.Connection,
    *,
    name: str | None,
    project: str | None,
    since_ns: int | None,
    until_ns: int | None,
    max_series: int,
    max_points: int,
) -> list[dict[str, Any]]:
    """Series (of metric ``name``, or all) with their points in time order, newest ``max_points`` of each.

    Without a name the series come without points (a list of what is stored).
    """
    rows = await conn.fetch(
        f"SELECT series_id, {', '.join(SERIES_FIELDS)} FROM otlp_metric_series "
        "WHERE ($1::text IS NULL OR name = $1) AND ($2::text IS NULL OR project = $2) "
        'ORDER BY name COLLATE "C", series_id LIMIT $3',
        name,
        project,
        max_series,
    )
    out = []
    for row in rows:
        series = series_json(row)
        if name is not None:
            points = await conn.fetch(
                "SELECT time_ns, start_ns, value, data FROM otlp_metric_points WHERE series_id = $1 "
                "AND ($2::bigint IS NULL OR time_ns >= $2) AND ($3::bigint IS NULL OR time_ns < $3) "
                "ORDER BY time_ns DESC LIMIT $4",
                row[0],
                since_ns,
                until_ns,
                max_points,
            )
            series["points"] = [point_json(*point) for point in reversed(points)]
        out.append(series)
    return out
