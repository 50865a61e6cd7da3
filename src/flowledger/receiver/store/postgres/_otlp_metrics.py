"""OTLP metrics on the PostgreSQL engine: the series and points tables of :mod:`.._otlp_metrics`, stored and read.

The series' key, the bounds and the API shape are those of
:mod:`.._otlp_metrics` (``MetricSeries``, ``SERIES_FIELDS``,
``series_json``, ``point_json``); only the statements are this engine's. A
series two receivers create at once is stored once (its key is unique); one
found under its older, order-dependent key is re-keyed unless another
receiver just stored it under the new key (then that series is used).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import asyncpg

from flowledger.receiver.store._otlp_metrics import (
    POINT_READ,
    SERIES_FIELDS,
    MetricPointRow,
    MetricSeries,
    MetricsOutcome,
    point_json,
    series_json,
)
from flowledger.receiver.store.postgres._dialect import text_row, without_nul

__all__ = ["pg_metric_series", "store_pg_metric_points"]

_TYPES: Final = {"temporality": "integer", "monotonic": "boolean"}
"""Series column types other than text (of the table and of the arrays a batch is sent as)."""

_INSERT_SERIES: Final = (
    f"INSERT INTO otlp_metric_series (series_key, {', '.join(SERIES_FIELDS)}) SELECT * FROM unnest($1::text[], "
    + ", ".join(f"${i + 2}::{_TYPES.get(c, 'text')}[]" for i, c in enumerate(SERIES_FIELDS))
    + ") ON CONFLICT (series_key) DO NOTHING"
)
_INSERT_POINTS: Final = (
    "INSERT INTO otlp_metric_points (series_id, time_ns, start_ns, value, int_value, data) "
    "SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::float8[], $5::bigint[], $6::text[]) "
    "ON CONFLICT (series_id, time_ns) DO NOTHING RETURNING 1"
)


async def _series_ids(conn: asyncpg.Connection, keys: list[str]) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT series_key, series_id FROM otlp_metric_series WHERE series_key = ANY($1::text[])", keys
    )
    return {str(key): int(series_id) for key, series_id in rows}


async def _rekey_unsorted(conn: asyncpg.Connection, series: list[MetricSeries], ids: dict[str, int]) -> None:
    """Find series stored under their older, order-dependent key; give them their key and add them to ``ids``."""
    former = {s.unsorted_key: s.key for s in series if s.unsorted_key is not None}
    if not former:
        return
    for old_key, series_id in (await _series_ids(conn, list(former))).items():
        key = former[old_key]
        if key in ids:  # stored under both keys (sent in two orders before): the new one is used
            continue
        try:
            async with conn.transaction():  # a savepoint: another receiver may store the new key meanwhile
                await conn.execute("UPDATE otlp_metric_series SET series_key = $1 WHERE series_id = $2", key, series_id)
        except asyncpg.UniqueViolationError:
            continue  # that receiver's series (under the new key) is found and used with the new ones
        ids[key] = series_id


async def store_pg_metric_points(
    conn: asyncpg.Connection, points: Sequence[MetricPointRow], *, max_series: int, max_points: int
) -> MetricsOutcome:
    """Store the points (inside the caller's transaction), their new series first; keep the tables bounded."""
    series_by_key = {without_nul(point.series.key): point.series for point in points}  # as stored
    ids = await _series_ids(conn, list(series_by_key))
    missing = [key for key in series_by_key if key not in ids]
    if missing:
        await _rekey_unsorted(conn, [series_by_key[key] for key in missing], ids)
        missing = [key for key in missing if key not in ids]
    if missing:
        room = max(0, max_series - int(await conn.fetchval("SELECT count(*) FROM otlp_metric_series")))
        if room:
            new_rows = [text_row(series_by_key[key].values()) for key in missing[:room]]
            await conn.execute(_INSERT_SERIES, *[list(column) for column in zip(*new_rows, strict=True)])
            ids.update(await _series_ids(conn, missing[:room]))
    keys = [without_nul(point.series.key) for point in points]
    rows = [
        text_row((ids[key], point.time_ns, point.start_ns, *point.stored_values(), point.data))
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
                f"SELECT {POINT_READ} FROM otlp_metric_points WHERE series_id = $1 "
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
