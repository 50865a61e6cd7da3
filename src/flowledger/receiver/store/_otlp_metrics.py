"""Stored OTLP metrics: time series per resource, scope, metric and attributes, with their data points.

The OTLP stage (:mod:`flowledger.receiver.otlp`) turns export requests into
:class:`MetricPointRow` values. A series is one ``(project, resource, scope,
metric name, type, unit, point attributes)``; its key is the SHA-256 of
those with every JSON object's keys sorted (:func:`series_key`, nested
key-value lists too), so a series is found again whatever the order in which
its resource or point attributes were sent; the series keeps them as they
were first sent. A series stored by a version that sorted only the point
attributes' top level is found by that older key (``unsorted_key``) and
re-keyed the first time it is sent again.
A point is stored once per ``(series, time)``: an exporter's retry is a
duplicate and changes nothing. A gauge or sum point keeps its value as sent:
an ``asInt`` in ``int_value`` (exact over the whole int64 range, answered as
a JSON integer), an ``asDouble`` in ``value``; points stored before
``int_value`` existed have their integers as doubles.

Both tables are bounded: at most ``max_series`` series (points of a new
series beyond it are refused and counted in the partial-success answer) and
at most ``max_points`` points (the oldest go first, as with a ring buffer).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiosqlite

from flowledger._wire import format_ts
from flowledger.receiver.store._bulk import insert_rows
from flowledger.receiver.store._spans import json_safe_number, loads_stored

__all__ = [
    "METRICS_SCHEMA",
    "POINT_READ",
    "SERIES_FIELDS",
    "MetricPointRow",
    "MetricSeries",
    "MetricsOutcome",
    "insert_metric_points",
    "point_json",
    "select_metric_series",
    "series_json",
    "series_key",
]

METRICS_SCHEMA: Final = """
-- OTLP metrics (/v1/metrics and gRPC): one row per series, its points apart. Times are ns since the epoch.
CREATE TABLE otlp_metric_series (
    series_id INTEGER PRIMARY KEY,
    series_key TEXT NOT NULL UNIQUE,
    project TEXT, name TEXT NOT NULL, type TEXT NOT NULL, unit TEXT NOT NULL, description TEXT NOT NULL,
    temporality INTEGER, monotonic INTEGER,
    service_name TEXT, resource TEXT NOT NULL, scope_name TEXT, scope_version TEXT, attributes TEXT NOT NULL
);
CREATE INDEX otlp_metric_series_by_name ON otlp_metric_series (name, project);
CREATE TABLE otlp_metric_points (
    point_id INTEGER PRIMARY KEY,
    series_id INTEGER NOT NULL,
    time_ns INTEGER NOT NULL,
    start_ns INTEGER,
    value REAL,
    data TEXT
);
CREATE UNIQUE INDEX otlp_metric_points_once ON otlp_metric_points (series_id, time_ns);
"""

SERIES_FIELDS: Final = (
    "project",
    "name",
    "type",
    "unit",
    "description",
    "temporality",
    "monotonic",
    "service_name",
    "resource",
    "scope_name",
    "scope_version",
    "attributes",
)
"""A series' columns after its key, in the order of :meth:`MetricSeries.values`."""
POINT_READ: Final = "time_ns, start_ns, value, data, int_value"
"""The point columns :func:`point_json` takes, in its order (both engines)."""
_LOOKUP_CHUNK: Final = 500


def series_key(
    project: str | None,
    name: str,
    kind: str,
    unit: str,
    resource: str,
    scope_name: str | None,
    scope_version: str | None,
    attributes: str,
) -> str:
    """A series' identity: the SHA-256 of its project, name, type (``kind``), unit, resource (JSON text), scope
    and point attributes (JSON text). Given canonical texts (keys sorted at every level) it is the same for any
    order they were sent in."""
    parts = [project, name, kind, unit, resource, scope_name, scope_version, attributes]
    return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class MetricSeries:
    """What identifies a series (and describes it); ``resource`` and ``attributes`` are JSON text as sent.

    ``key`` is :func:`series_key` of the canonical texts (whatever the order sent); ``unsorted_key`` the key an
    earlier version gave the same series from the texts as sent (None when it is ``key``): a series stored
    under it is re-keyed when found.
    """

    project: str | None
    name: str
    type: str
    unit: str
    description: str
    temporality: int | None
    monotonic: bool | None
    service_name: str | None
    resource: str
    scope_name: str | None
    scope_version: str | None
    attributes: str
    key: str
    unsorted_key: str | None = None

    def values(self) -> tuple[Any, ...]:
        """The series' columns, key first."""
        return (self.key, *(getattr(self, name) for name in SERIES_FIELDS))


@dataclass(frozen=True, slots=True)
class MetricPointRow:
    """One data point and its series. ``value`` for gauges and sums (an int for ``asInt``, a float for
    ``asDouble``); ``data`` (JSON) for the other types."""

    series: MetricSeries
    time_ns: int
    start_ns: int | None
    value: int | float | None
    data: str | None

    def stored_values(self) -> tuple[float | None, int | None]:
        """``(value, int_value)`` as stored: a double in the first, an integer in the second."""
        if isinstance(self.value, int):
            return None, self.value
        return self.value, None


@dataclass(frozen=True, slots=True)
class MetricsOutcome:
    """What storing a batch of points did."""

    stored: int
    duplicates: int
    over_series_limit: int
    """Points refused because their series was new and the series table was full."""


async def _series_ids(conn: aiosqlite.Connection, keys: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for start in range(0, len(keys), _LOOKUP_CHUNK):
        part = keys[start : start + _LOOKUP_CHUNK]
        sql = f"SELECT series_key, series_id FROM otlp_metric_series WHERE series_key IN ({', '.join('?' * len(part))})"
        for key, series_id in await conn.execute_fetchall(sql, part):
            found[str(key)] = int(series_id)
    return found


async def _rekey_unsorted(conn: aiosqlite.Connection, series: list[MetricSeries], ids: dict[str, int]) -> None:
    """Find series stored under their older, order-dependent key; give them their key and add them to ``ids``."""
    former = {s.unsorted_key: s.key for s in series if s.unsorted_key is not None}
    if not former:
        return
    for old_key, series_id in (await _series_ids(conn, list(former))).items():
        key = former[old_key]
        if key not in ids:  # else the series is stored under both keys (sent in two orders before): use the new
            await conn.execute("UPDATE otlp_metric_series SET series_key = ? WHERE series_id = ?", [key, series_id])
            ids[key] = series_id


async def insert_metric_points(
    conn: aiosqlite.Connection, points: Sequence[MetricPointRow], *, max_series: int, max_points: int
) -> MetricsOutcome:
    """Store the points (inside the caller's transaction), their new series first; keep the tables bounded."""
    series_by_key = {point.series.key: point.series for point in points}
    ids = await _series_ids(conn, list(series_by_key))
    missing = [key for key in series_by_key if key not in ids]
    if missing:
        await _rekey_unsorted(conn, [series_by_key[key] for key in missing], ids)
        missing = [key for key in missing if key not in ids]
    if missing:
        (count,) = next(iter(await conn.execute_fetchall("SELECT count(*) FROM otlp_metric_series")))
        room = max(0, max_series - int(count))
        head = f"INSERT INTO otlp_metric_series (series_key, {', '.join(SERIES_FIELDS)})"
        new_rows = [series_by_key[key].values() for key in missing[:room]]
        await insert_rows(conn, head, new_rows, width=len(SERIES_FIELDS) + 1)
        ids.update(await _series_ids(conn, missing[:room]))
    rows = [
        (ids[point.series.key], point.time_ns, point.start_ns, *point.stored_values(), point.data)
        for point in points
        if point.series.key in ids
    ]
    before = conn.total_changes
    head = "INSERT OR IGNORE INTO otlp_metric_points (series_id, time_ns, start_ns, value, int_value, data)"
    await insert_rows(conn, head, rows, width=6)
    stored = conn.total_changes - before
    if stored:
        (last,) = next(iter(await conn.execute_fetchall("SELECT max(point_id) FROM otlp_metric_points")))
        await conn.execute("DELETE FROM otlp_metric_points WHERE point_id <= ?", [int(last) - max_points])
    return MetricsOutcome(stored=stored, duplicates=len(rows) - stored, over_series_limit=len(points) - len(rows))


def series_json(row: Sequence[Any]) -> dict[str, Any]:
    """The API shape of a series read as ``series_id`` and :data:`SERIES_FIELDS`, without its points yet."""
    values = dict(zip(("series_id", *SERIES_FIELDS), row, strict=True))
    return {
        "name": values["name"],
        "type": values["type"],
        "unit": values["unit"],
        "description": values["description"],
        "temporality": values["temporality"],
        "monotonic": None if values["monotonic"] is None else bool(values["monotonic"]),
        "service_name": values["service_name"],
        "resource": loads_stored(values["resource"]),
        "scope": {"name": values["scope_name"], "version": values["scope_version"]},
        "attributes": loads_stored(values["attributes"]),
        "project": values["project"],
        "points": [],
    }


def point_json(
    time_ns: int, start_ns: int | None, value: float | None, data: str | None, int_value: int | None = None
) -> dict[str, Any]:
    """The API shape of one data point (read as :data:`POINT_READ`): an integer value stays an integer."""
    point: dict[str, Any] = {
        "time": format_ts(time_ns),
        "time_unix_nano": time_ns,
        "start_time_unix_nano": start_ns,
    }
    if data is not None:
        point.update(loads_stored(data))
    elif int_value is not None:
        point["value"] = int(int_value)
    else:
        point["value"] = None if value is None else json_safe_number(value)
    return point


async def select_metric_series(
    conn: aiosqlite.Connection,
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
    where, params = [], []
    if name is not None:
        where.append("name = ?")
        params.append(name)
    if project is not None:
        where.append("project = ?")
        params.append(project)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = await conn.execute_fetchall(
        f"SELECT series_id, {', '.join(SERIES_FIELDS)} FROM otlp_metric_series{clause} "
        "ORDER BY name, series_id LIMIT ?",
        [*params, max_series],
    )
    out = []
    for row in rows:
        series = series_json(row)
        if name is not None:
            bounds, bound_params = "", []
            if since_ns is not None:
                bounds += " AND time_ns >= ?"
                bound_params.append(since_ns)
            if until_ns is not None:
                bounds += " AND time_ns < ?"
                bound_params.append(until_ns)
            points = await conn.execute_fetchall(
                f"SELECT {POINT_READ} FROM otlp_metric_points "
                f"WHERE series_id = ?{bounds} ORDER BY time_ns DESC LIMIT ?",
                [row[0], *bound_params, max_points],
            )
            series["points"] = [point_json(*point) for point in reversed(list(points))]
        out.append(series)
    return out
