"""Statistics by workflow, agent, project and node: rollups kept as finished runs and attempts fold.

Each finished run adds itself to one row per dimension (its workflow, its
agent, its project) of the ``stats_rollup`` table, and each finished node
attempt to one row of the ``node`` dimension (key ``workflow_id/node_id``),
per project, status and UTC hour of its start, and again per UTC day: the
hour rows answer hour buckets and the edges of a range, the day rows its
whole days, so a query over a month reads a few rows per group and day.

A row holds the count, the exact cost (nano-dollars: sum, count, min, max)
and the durations (sum in whole microseconds, count, min, max); beside it
(``stats_bins``) a *mergeable* duration summary: a histogram over fixed
log-scale bins of width :data:`HISTOGRAM_GAMMA` (2 %). Bins add across rows, so p50 and p95
over any range are read from the summed histogram: the value reported for a
bin is its geometric middle, clamped to the range's min and max, which is
within :data:`PERCENTILE_RELATIVE_ERROR` (1 %) of the exact nearest-rank
percentile. Counts, sums, min and max are exact.

A run or attempt whose fold changes (a late ``run_finished`` wins) is taken
out of its old row and added to its new one; min and max, which cannot be
taken back, stay as they were. Purges and retention leave the rows alone
(statistics survive them); a rebuild takes the stored runs out and folds
them back in (:mod:`._rollups`). Runs that have not finished are not counted.
"""

from __future__ import annotations

import enum
import math
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import aiosqlite

from flowledger._money import nanos_to_usd, usd_to_nanos
from flowledger._wire import NodeStatus, RunStatus

__all__ = [
    "HISTOGRAM_GAMMA",
    "PERCENTILE_RELATIVE_ERROR",
    "STATS_SCHEMA",
    "Bucket",
    "Contribution",
    "StatsBy",
    "StatsQuery",
    "duration_bin",
    "record_contributions",
    "record_contributions_sync",
    "stats_groups",
]

HISTOGRAM_GAMMA: Final = 1.02
"""Each histogram bin spans durations from ``g**b`` to ``g**(b+1)`` milliseconds."""
PERCENTILE_RELATIVE_ERROR: Final = math.sqrt(HISTOGRAM_GAMMA) - 1
"""How far (relative) a reported p50/p95 can be from the exact one: under 1 %."""
_ZERO_BIN: Final = -(10**6)
"""The bin of durations of zero (or less)."""
_LOG_GAMMA: Final = math.log(HISTOGRAM_GAMMA)


class StatsBy(enum.StrEnum):
    """What statistics are grouped by."""

    WORKFLOW = "workflow"
    AGENT = "agent"
    PROJECT = "project"
    NODE = "node"


class Bucket(enum.StrEnum):
    """The width of a time-series bucket."""

    HOUR = "hour"
    DAY = "day"


_HOUR: Final = "h"
_DAY: Final = "d"

STATS_SCHEMA: Final = """
-- Statistics of finished runs (dimensions workflow, agent, project) and node attempts (node), per project,
-- status and UTC hour (grain 'h') and day (grain 'd') of their start. Costs in nano-dollars, durations'
-- sum in microseconds.
CREATE TABLE stats_rollup (
    dim TEXT NOT NULL, grain TEXT NOT NULL, bucket TEXT NOT NULL, key TEXT NOT NULL, project TEXT NOT NULL,
    status TEXT NOT NULL,
    runs INTEGER NOT NULL,
    cost_nanos INTEGER NOT NULL, costs INTEGER NOT NULL, cost_min_nanos INTEGER, cost_max_nanos INTEGER,
    duration_us INTEGER NOT NULL, durations INTEGER NOT NULL, duration_ms_min REAL, duration_ms_max REAL,
    PRIMARY KEY (dim, grain, bucket, key, project, status)
) WITHOUT ROWID;
-- The duration histograms of the same rows (statuses together): runs per log-scale bin.
CREATE TABLE stats_bins (
    dim TEXT NOT NULL, grain TEXT NOT NULL, bucket TEXT NOT NULL, key TEXT NOT NULL, project TEXT NOT NULL,
    bin INTEGER NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (dim, grain, bucket, key, project, bin)
) WITHOUT ROWID;
"""


def duration_bin(ms: float) -> int:
    """The histogram bin of a duration in milliseconds."""
    if ms <= 0:
        return _ZERO_BIN
    b = math.floor(math.log(ms) / _LOG_GAMMA)
    if HISTOGRAM_GAMMA**b > ms:  # the log's rounding put it one bin too high
        b -= 1
    elif HISTOGRAM_GAMMA ** (b + 1) <= ms:
        b += 1
    return b


def _bin_value(b: int) -> float:
    return 0.0 if b == _ZERO_BIN else float(HISTOGRAM_GAMMA ** (b + 0.5))


@dataclass(frozen=True, slots=True)
class Contribution:
    """What one finished run or attempt adds to one dimension."""

    dim: StatsBy
    key: str
    project: str
    status: str
    started_at: str
    cost_usd: float | None
    duration_ms: float | None


@dataclass(slots=True)
class _Sums:
    runs: int = 0
    cost_nanos: int = 0
    costs: int = 0
    cost_min: int | None = None
    cost_max: int | None = None
    duration_us: int = 0
    durations: int = 0
    duration_min: float | None = None
    duration_max: float | None = None
    histogram: dict[int, int] = field(default_factory=dict)

    def add(self, c: Contribution, sign: int) -> None:
        self.runs += sign
        if c.cost_usd is not None:
            nanos = usd_to_nanos(c.cost_usd)
            self.cost_nanos += sign * nanos
            self.costs += sign
            if sign > 0:
                self.cost_min = nanos if self.cost_min is None else min(self.cost_min, nanos)
                self.cost_max = nanos if self.cost_max is None else max(self.cost_max, nanos)
        if c.duration_ms is not None:
            ms = c.duration_ms
            self.duration_us += sign * round(ms * 1000)
            self.durations += sign
            b = duration_bin(ms)
            self.histogram[b] = self.histogram.get(b, 0) + sign
            if sign > 0:
                self.duration_min = ms if self.duration_min is None else min(self.duration_min, ms)
                self.duration_max = ms if self.duration_max is None else max(self.duration_max, ms)

    def merge(self, other: _Sums) -> None:
        self.runs += other.runs
        self.cost_nanos += other.cost_nanos
        self.costs += other.costs
        self.cost_min = _least(self.cost_min, other.cost_min)
        self.cost_max = _most(self.cost_max, other.cost_max)
        self.duration_us += other.duration_us
        self.durations += other.durations
        self.duration_min = _least(self.duration_min, other.duration_min)
        self.duration_max = _most(self.duration_max, other.duration_max)
        for b, n in other.histogram.items():
            self.histogram[b] = self.histogram.get(b, 0) + n

    def row(self) -> tuple[Any, ...]:
        return (
            self.runs,
            self.cost_nanos,
            self.costs,
            self.cost_min,
            self.cost_max,
            self.duration_us,
            self.durations,
            self.duration_min,
            self.duration_max,
        )

    @classmethod
    def of_row(cls, row: Sequence[Any]) -> _Sums:
        runs, cost, costs, cmin, cmax, dus, durs, dmin, dmax = row
        return cls(
            int(runs),
            int(cost),
            int(costs),
            cmin,
            cmax,
            int(dus),
            int(durs),
            dmin,
            dmax,
        )

    def percentile(self, p: float) -> float | None:
        """The nearest-rank percentile ``p`` (0 < p <= 1) read from the histogram, clamped to min and max."""
        total = sum(self.histogram.values())
        if total <= 0:
            return None
        rank = max(1, math.ceil(p * total))
        seen = 0
        for b in sorted(self.histogram):
            seen += self.histogram[b]
            if seen >= rank:
                value = _bin_value(b)
                if self.duration_min is not None:
                    value = max(value, self.duration_min)
                if self.duration_max is not None:
                    value = min(value, self.duration_max)
                return value
        return None  # pragma: no cover - the loop reaches the rank

    def as_json(self) -> dict[str, Any]:
        return {
            "runs": self.runs,
            "cost_usd": {
                "total": nanos_to_usd(self.cost_nanos),
                "avg": None if self.costs <= 0 else nanos_to_usd(round(self.cost_nanos / self.costs)),
                "min": None if self.cost_min is None else nanos_to_usd(self.cost_min),
                "max": None if self.cost_max is None else nanos_to_usd(self.cost_max),
            },
            "duration_ms": {
                "avg": None if self.durations <= 0 else self.duration_us / self.durations / 1000,
                "p50": self.percentile(0.5),
                "p95": self.percentile(0.95),
            },
        }


def _least(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else min(a, b)


def _most(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else max(a, b)


def _hour(ts: str) -> str:
    return ts[:13] + ":00:00.000000Z"


def _day(ts: str) -> str:
    return ts[:10] + "T00:00:00.000000Z"


_RowKey = tuple[str, str, str, str, str, str]
_ROW_COLUMNS: Final = (
    "runs, cost_nanos, costs, cost_min_nanos, cost_max_nanos, duration_us, durations, duration_ms_min, duration_ms_max"
)
_KEY_WHERE: Final = "dim = ? AND grain = ? AND bucket = ? AND key = ? AND project = ? AND status = ?"


def _least_sql(column: str) -> str:
    return f"{column} = min(coalesce({column}, excluded.{column}), coalesce(excluded.{column}, {column}))"


def _most_sql(column: str) -> str:
    return f"{column} = max(coalesce({column}, excluded.{column}), coalesce(excluded.{column}, {column}))"


_ADD_ROW: Final = (
    f"INSERT INTO stats_rollup (dim, grain, bucket, key, project, status, {_ROW_COLUMNS}) "
    f"VALUES ({', '.join('?' * 15)}) ON CONFLICT (dim, grain, bucket, key, project, status) DO UPDATE SET "
    "runs = runs + excluded.runs, cost_nanos = cost_nanos + excluded.cost_nanos, costs = costs + excluded.costs, "
    f"{_least_sql('cost_min_nanos')}, {_most_sql('cost_max_nanos')}, "
    "duration_us = duration_us + excluded.duration_us, durations = durations + excluded.durations, "
    f"{_least_sql('duration_ms_min')}, {_most_sql('duration_ms_max')}"
)
"""Adds a delta to its row in one statement (a NULL min or max leaves the other side's): what
:meth:`_Sums.merge` does, so that a batch's rows are one ``executemany``."""
_DROP_EMPTY_ROW: Final = f"DELETE FROM stats_rollup WHERE {_KEY_WHERE} AND runs <= 0"
_ADD_BINS: Final = (
    "INSERT INTO stats_bins (dim, grain, bucket, key, project, bin, count) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (dim, grain, bucket, key, project, bin) DO UPDATE SET count = count + excluded.count"
)
_DROP_EMPTY_BINS: Final = (
    "DELETE FROM stats_bins WHERE dim = ? AND grain = ? AND bucket = ? AND key = ? AND project = ? AND count <= 0"
)


def _bin_rows(deltas: dict[_RowKey, _Sums]) -> tuple[list[tuple[Any, ...]], set[tuple[str, ...]]]:
    """The histogram deltas as stats_bins rows (statuses added up), and the places where bins were taken away."""
    bins: dict[tuple[Any, ...], int] = {}
    lowered: set[tuple[str, ...]] = set()
    for key, delta in deltas.items():
        place = key[:5]
        for b, n in delta.histogram.items():
            if n:
                bins[(*place, b)] = bins.get((*place, b), 0) + n
                if n < 0:
                    lowered.add(place)
    return [(*k, n) for k, n in bins.items() if n], lowered


def _deltas(added: Iterable[Contribution], removed: Iterable[Contribution]) -> dict[_RowKey, _Sums]:
    deltas: dict[_RowKey, _Sums] = {}
    for contributions, sign in ((added, 1), (removed, -1)):
        for c in contributions:
            for grain, bucket in ((_HOUR, _hour(c.started_at)), (_DAY, _day(c.started_at))):
                key = (c.dim.value, grain, bucket, c.key, c.project, c.status)
                sums = deltas.get(key)
                if sums is None:
                    sums = deltas[key] = _Sums()
                sums.add(c, sign)
    return deltas


async def record_contributions(
    conn: aiosqlite.Connection, added: Iterable[Contribution], removed: Iterable[Contribution]
) -> None:
    """Add and take away contributions (inside the caller's transaction)."""
    deltas = _deltas(added, removed)
    if deltas:  # one statement for the batch: a row a statement would hand each one to the database thread
        await conn.executemany(_ADD_ROW, [(*key, *delta.row()) for key, delta in deltas.items()])
        emptied = [key for key, delta in deltas.items() if delta.runs < 0]
        if emptied:
            await conn.executemany(_DROP_EMPTY_ROW, emptied)
    bins, lowered = _bin_rows(deltas)
    if bins:
        await conn.executemany(_ADD_BINS, bins)
    if lowered:
        await conn.executemany(_DROP_EMPTY_BINS, list(lowered))


def record_contributions_sync(conn: sqlite3.Connection, added: Iterable[Contribution]) -> None:
    """:func:`record_contributions` (adding only) on a plain sqlite3 connection, for migrations."""
    deltas = _deltas(added, ())
    conn.executemany(_ADD_ROW, [(*key, *delta.row()) for key, delta in deltas.items()])
    conn.executemany(_ADD_BINS, _bin_rows(deltas)[0])


@dataclass(frozen=True, slots=True, kw_only=True)
class StatsQuery:
    """Which statistics to answer."""

    by: StatsBy = StatsBy.WORKFLOW
    since: str | None = None
    """Runs started in the UTC hours from the one holding this normalised timestamp on."""
    until: str | None = None
    """Runs started in the UTC hours that start before this normalised timestamp."""
    bucket: Bucket | None = None
    """With a bucket, each group also has its ``series``."""
    project: str | None = None
    """Set from the API key: only this project's runs."""
    limit: int = 100


_SUCCEEDED: Final = frozenset({RunStatus.SUCCEEDED.value, NodeStatus.SUCCEEDED.value})


def _plan(since: str | None, until: str | None, bucket: Bucket | None) -> list[tuple[str, str | None, str | None]]:
    """The (grain, from, before) ranges of rollup rows that cover [since, until) exactly once."""
    start = None if since is None else _hour(since)
    if bucket is Bucket.HOUR:
        return [(_HOUR, start, until)]
    # Whole days from day rows; the hours before the first whole day and after the last from hour rows.
    first_day = None if start is None else (start if start == _day(start) else _next_day(start))
    last_day = None if until is None else _day(until)  # the days before until's own day end by until
    if first_day is not None and last_day is not None and first_day >= last_day:
        return [(_HOUR, start, until)]
    ranges: list[tuple[str, str | None, str | None]] = [(_DAY, first_day, last_day)]
    if start is not None and first_day is not None and start < first_day:
        ranges.append((_HOUR, start, first_day))
    if until is not None and last_day is not None and last_day < until:
        ranges.append((_HOUR, last_day, until))
    return ranges


def _next_day(hour: str) -> str:
    day = datetime.fromisoformat(hour[:10]) + timedelta(days=1)
    return day.strftime("%Y-%m-%d") + "T00:00:00.000000Z"


_FIGURES_SQL: Final = (
    "sum(runs), sum(cost_nanos), sum(costs), min(cost_min_nanos), max(cost_max_nanos), sum(duration_us), "
    "sum(durations), min(duration_ms_min), max(duration_ms_max)"
)


def _where(query: StatsQuery, grain: str, low: str | None, high: str | None) -> tuple[str, list[Any]]:
    clauses = ["dim = ?", "grain = ?"]
    params: list[Any] = [query.by.value, grain]
    if low is not None:
        clauses.append("bucket >= ?")
        params.append(low)
    if high is not None:
        clauses.append("bucket < ?")
        params.append(high)
    if query.project is not None:
        clauses.append("project = ?")
        params.append(query.project)
    return " AND ".join(clauses), params


async def stats_groups(conn: aiosqlite.Connection, query: StatsQuery) -> list[dict[str, Any]]:
    """The statistics of each group, most runs first, as ``GET /api/stats`` answers them.

    The sums and the histograms are added up by SQLite (``GROUP BY``): Python reads one row per group
    (and series point) and status, and one per group and bin.
    """
    if query.since is not None and query.until is not None and query.since >= query.until:
        return []
    # A series point: the bucket itself (hours) or its day; "" gathers a group's whole range.
    point_sql = {None: "''", Bucket.HOUR: "bucket", Bucket.DAY: "substr(bucket, 1, 10) || 'T00:00:00.000000Z'"}[
        query.bucket
    ]
    sums: dict[tuple[str, str], _Sums] = {}
    statuses: dict[tuple[str, str], dict[str, int]] = {}
    for grain, low, high in _plan(query.since, query.until, query.bucket):
        where, params = _where(query, grain, low, high)
        figures = await conn.execute_fetchall(
            f"SELECT key, {point_sql}, status, {_FIGURES_SQL} FROM stats_rollup WHERE {where} GROUP BY 1, 2, 3", params
        )
        for row in figures:
            point = (str(row[0]), str(row[1]))
            part = _Sums.of_row(tuple(row[3:]))
            total = sums.get(point)
            if total is None:
                total = sums[point] = _Sums()
                statuses[point] = {}
            total.merge(part)
            statuses[point][str(row[2])] = statuses[point].get(str(row[2]), 0) + part.runs
        bins = await conn.execute_fetchall(
            f"SELECT key, {point_sql}, bin, sum(count) FROM stats_bins WHERE {where} GROUP BY 1, 2, 3",
            params,
        )
        for key, point_start, b, n in bins:
            histogram = sums[(str(key), str(point_start))].histogram
            histogram[int(b)] = histogram.get(int(b), 0) + int(n)
    groups: dict[str, _Sums] = {}
    group_statuses: dict[str, dict[str, int]] = {}
    series: dict[str, list[tuple[str, _Sums, dict[str, int]]]] = {}
    for (key, point_start), part in sorted(sums.items()):
        total = groups.get(key)
        if total is None:
            total = groups[key] = _Sums()
            group_statuses[key] = {}
        total.merge(part)
        for status, n in statuses[(key, point_start)].items():
            group_statuses[key][status] = group_statuses[key].get(status, 0) + n
        series.setdefault(key, []).append((point_start, part, statuses[(key, point_start)]))
    ordered = sorted(groups, key=lambda k: (-groups[k].runs, k))[: query.limit]
    out: list[dict[str, Any]] = []
    for key in ordered:
        group = {"key": key, **_group_json(groups[key], group_statuses[key])}
        if query.bucket is not None:
            group["series"] = [
                {"start": start, **_group_json(part, part_statuses)} for start, part, part_statuses in series[key]
            ]
        out.append(group)
    return out


def _group_json(sums: _Sums, statuses: dict[str, int]) -> dict[str, Any]:
    body = sums.as_json()
    succeeded = sum(n for s, n in statuses.items() if s in _SUCCEEDED)
    return {
        "runs": body["runs"],
        "by_status": dict(sorted(statuses.items())),
        "success_rate": None if sums.runs <= 0 else succeeded / sums.runs,
        "cost_usd": body["cost_usd"],
        "duration_ms": body["duration_ms"],
    }
