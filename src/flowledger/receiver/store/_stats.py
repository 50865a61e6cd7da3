"""Statistics by workflow, agent, project and node: rollups kept as finished runs and attempts fold.

Each finished run adds itself to one row per dimension (its workflow, its
agent, its project) of the ``stats_rollup`` table, and each finished node
attempt to one row of the ``node`` dimension (key ``workflow_id/node_id``),
per status and UTC hour (grain ``h``), day (``d``) and month (``m``) of its
start, once for its project and once for all projects (project
:data:`ALL_PROJECTS`; a run without a project only there). A query reads the rows of its scope (all projects, or
the API key's one): whole months of its range from month rows, the days
around them from day rows and the hours at its edges from hour rows (hour
buckets read hour rows, day buckets day rows and the edges' hours), so a
query over a month reads a few rows per group, and never sums projects.

A row holds the count, the exact cost (nano-dollars: sum, count, min, max)
and the durations (sum in whole microseconds, count, min, max). Beside the
rows of a place (statuses together), ``stats_hist`` keeps a *mergeable*
duration histogram: counts over fixed log-scale bins of width
:data:`HISTOGRAM_GAMMA` (2 %), as one blob of counts (:func:`encode_histogram`).
Histograms add across places, so p50 and p95 over any range are read from the
summed histogram (a place's own are kept beside its histogram, ``p50_field`` and ``p95_field``, so that a
series point of one whole bucket is read without its histogram): the value reported for a bin is its geometric middle,
clamped to the range's min and max duration, which is within
:data:`PERCENTILE_RELATIVE_ERROR` (under 1 %) of the exact nearest-rank
percentile for durations from 1 µs to 10**10 ms (about 115 days); zero
durations are exact, shorter and longer ones share the first and last bin.
Counts, sums, min and max are exact (sums of money and durations past 2**63:
see :data:`_WIDE_SUMS`). Each hour and day place's figures with
its statuses added up are kept too (``stats_total``, made again from the
place's rows whenever they change), so a series reads a whole bucket as one
row; its edges and queries without buckets add up the rows.

A run or attempt whose fold changes (a late ``run_finished`` wins, a late
``run_started`` names its agent or workflow) is taken out of its old rows and
added to its new ones. A row's min and max cannot be taken back by
subtraction: when one that is taken out held a row's min or max, the row's
are found again (:func:`exact_extremes`): an hour row's from the stored runs
or attempts it counts, a day row's from its hours, a month row's from its
days. Purges and retention leave the rows alone
(statistics survive them); a rebuild takes the stored runs out and folds
them back in (:mod:`._rollups`). Runs that have not finished are not counted.
"""

from __future__ import annotations

import enum
import math
import sqlite3
import sys
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache
from itertools import accumulate, compress
from operator import itemgetter
from typing import Any, Final, Literal, NamedTuple

import aiosqlite

from flowledger._money import nanos_to_usd, usd_to_nanos
from flowledger._wire import NodeStatus, RunStatus
from flowledger.receiver.store._on_thread import WriteConnection

__all__ = [
    "ALL_PROJECTS",
    "HISTOGRAM_GAMMA",
    "PERCENTILE_RELATIVE_ERROR",
    "STATS_ROW_COLUMNS",
    "STATS_SCHEMA",
    "STATS_TOTALS_SCHEMA",
    "STORED_PERCENTILES_SCHEMA",
    "Bucket",
    "Contribution",
    "FiguresReader",
    "StatsBy",
    "StatsDeltas",
    "StatsQuery",
    "decode_histogram",
    "duration_bin",
    "encode_histogram",
    "exact_extremes",
    "keep_totals_sync",
    "record_contributions",
    "record_contributions_sync",
    "stats_answer",
    "stats_blobs",
    "stats_deltas",
    "stats_groups",
    "stats_reads",
    "store_percentiles_sync",
    "upgrade_rollups_sync",
]

HISTOGRAM_GAMMA: Final = 1.02
"""Each histogram bin spans durations from ``g**b`` to ``g**(b+1)`` milliseconds."""
PERCENTILE_RELATIVE_ERROR: Final = math.sqrt(HISTOGRAM_GAMMA) - 1
"""How far (relative) a reported p50/p95 can be from the exact one: under 1 % (0.995 %)."""
ALL_PROJECTS: Final = "*"
"""The project of the rows that count every project's runs (never a project name)."""
_LOG_GAMMA: Final = math.log(HISTOGRAM_GAMMA)
_SUCCEEDED: Final = frozenset({RunStatus.SUCCEEDED.value, NodeStatus.SUCCEEDED.value})
_STATUSES: Final = tuple(
    sorted({s.value for s in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.ABORTED)} | {s.value for s in NodeStatus
            if s is not NodeStatus.RUNNING})
)  # fmt: skip
"""The statuses of finished runs and attempts, in the order ``by_status`` lists them."""


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
_MONTH: Final = "m"

STATS_SCHEMA: Final = """
-- Statistics of finished runs (dimensions workflow, agent, project) and node attempts (node), per project
-- ('*': all projects), UTC hour (grain 'h'), day ('d') and month ('m') of their start, and status. Costs in
-- nano-dollars, durations' sum in microseconds.
CREATE TABLE stats_rollup (
    dim TEXT NOT NULL, grain TEXT NOT NULL, project TEXT NOT NULL, bucket TEXT NOT NULL, key TEXT NOT NULL,
    status TEXT NOT NULL,
    runs INTEGER NOT NULL,
    cost_nanos INTEGER NOT NULL, costs INTEGER NOT NULL, cost_min_nanos INTEGER, cost_max_nanos INTEGER,
    duration_us INTEGER NOT NULL, durations INTEGER NOT NULL, duration_ms_min REAL, duration_ms_max REAL,
    PRIMARY KEY (dim, grain, project, bucket, key, status)
) WITHOUT ROWID;
-- The duration histogram of the same places (statuses together): see encode_histogram. A later version adds
-- the fields of its p50 and p95 (STORED_PERCENTILES_SCHEMA).
CREATE TABLE stats_hist (
    dim TEXT NOT NULL, grain TEXT NOT NULL, project TEXT NOT NULL, bucket TEXT NOT NULL, key TEXT NOT NULL,
    hist BLOB NOT NULL,
    PRIMARY KEY (dim, grain, project, bucket, key)
) WITHOUT ROWID;
"""


_STORED_PERCENTILES: Final = ("p50_field", "p95_field")
STORED_PERCENTILES_SCHEMA: Final = tuple(f"ALTER TABLE stats_hist ADD COLUMN {c} INTEGER" for c in _STORED_PERCENTILES)
"""The fields holding each stored histogram's nearest-rank p50 and p95 (:func:`_stored_ranking`), kept beside it:
a series point of one whole bucket takes them as they are, with no work on its counts."""


def duration_bin(ms: float) -> int:
    """The histogram bin of a positive duration in milliseconds."""
    b = math.floor(math.log(ms) / _LOG_GAMMA)
    if HISTOGRAM_GAMMA**b > ms:  # the log's rounding put it one bin too high
        b -= 1
    elif HISTOGRAM_GAMMA ** (b + 1) <= ms:
        b += 1
    return b


_MIN_BIN: Final = duration_bin(0.001)
"""The bin of 1 µs: shorter (positive) durations are counted in it."""
_MAX_BIN: Final = duration_bin(1e10)
"""The bin of 10**10 ms: longer durations are counted in it."""
_FIELD_BITS: Final = 64


def _field(ms: float) -> int:
    """A duration's field in a histogram: 0 for zero (or less), then one per bin from :data:`_MIN_BIN` up."""
    if ms <= 0:
        return 0
    return min(max(duration_bin(ms), _MIN_BIN), _MAX_BIN) - _MIN_BIN + 1


def _field_value(field: int) -> float:
    return 0.0 if field == 0 else float(HISTOGRAM_GAMMA ** (field - 1 + _MIN_BIN + 0.5))


_FIELD_VALUES: Final = tuple(_field_value(f) for f in range(_MAX_BIN - _MIN_BIN + 2))
"""The value reported for each field (:func:`_field_value`), looked up rather than raised to a power per point."""


def encode_histogram(histogram: int) -> bytes:
    """A histogram as stored: its counts are the 64-bit fields of one integer (field ``f`` counts the durations
    of :func:`_field` ``f``), so that histograms add up as integers do. Kept from its lowest non-empty field on:
    two bytes of that field's number, one of the width of a count (1, 2, 4 or 8 bytes: the narrowest that holds
    the largest), then the counts (little-endian). Not compressed: a read spreads the counts' bytes over 64-bit
    fields with strided copies (:func:`_unpack`, about 1 µs), where inflating took several µs a point."""
    fields = _fields_of(histogram)
    if fields is None:
        raise ValueError("an empty histogram is not stored")
    low, raw = fields
    width = next(w for w in _WIDTHS if w == 8 or not any(raw[byte::8].strip(b"\0") for byte in range(w, 8)))
    narrow = bytearray(len(raw) // 8 * width)
    for byte in range(width):
        narrow[byte::width] = raw[byte::8]
    return low.to_bytes(2, "little") + bytes((width,)) + narrow


def decode_histogram(blob: bytes) -> int:
    """The integer of a stored histogram (:func:`encode_histogram`)."""
    low, raw = _unpack(blob)
    return int.from_bytes(raw, "little") << (_FIELD_BITS * low)


def _unpack(blob: bytes) -> tuple[int, bytes | bytearray]:
    """A stored histogram's lowest field and its fields from there (little-endian 64-bit counts)."""
    return blob[0] | blob[1] << 8, _widened(blob, 8)


def _widened(blob: bytes, lane: int) -> bytes | bytearray:
    """A stored histogram's counts, each spread over ``lane`` bytes (little-endian; at least its counts' width)
    by strided slice assignments (C loops over bytes)."""
    width = blob[2]
    if width == lane:
        return blob[3:]
    body = blob[3:]
    wide = bytearray(len(body) // width * lane)
    for byte in range(width):
        wide[byte::lane] = body[byte::width]
    return wide


_WIDTHS: Final = (1, 2, 4, 8)
"""The widths of a stored count, in bytes."""


def _fields_of(histogram: int) -> tuple[int, bytes] | None:
    """A histogram integer as :func:`_unpack` gives it; None when it is empty."""
    if histogram <= 0:
        return None
    low = ((histogram & -histogram).bit_length() - 1) // _FIELD_BITS
    fields = histogram >> (_FIELD_BITS * low)
    return low, fields.to_bytes((fields.bit_length() + _FIELD_BITS - 1) // _FIELD_BITS * 8, "little")


def _percentile_fields(low: int, raw: bytes) -> tuple[int, int]:
    """The fields holding the nearest-rank p50 and p95 of the histogram whose fields from ``low`` are ``raw``."""
    return _ranked_fields(low, _counts(raw, 8))


def _added_percentile_fields(blobs: Sequence[bytes]) -> tuple[int, int] | None:
    """:func:`_percentile_fields` of the sum of stored histograms (None when it is empty).

    One histogram is read from its counts as stored, with no copy. Several are added as integers whose fields
    are only as wide as their sum can need (``m`` counts each under ``2**(8*w)`` add up under ``m * 2**(8*w)``),
    not 64 bits: a month of one-byte day counts adds up in two-byte fields, a quarter of the bytes to copy,
    shift and add."""
    if len(blobs) == 1:
        blob = blobs[0]
        return _ranked_fields(blob[0] | blob[1] << 8, _counts(blob[3:], blob[2])) if len(blob) > 3 else None
    widths = {blob[2] for blob in blobs}  # one pass each, no generator: a group adds a month of days
    widest = max(widths)
    lane = next(w for w in _LANES if w == 8 or len(blobs) << (8 * widest) <= 1 << (8 * w))
    lows = [blob[0] | blob[1] << 8 for blob in blobs]
    base = min(lows)
    if lane == 2 * widest and len(widths) == 1:
        return _added_in_halves(blobs, lows, widest, base)
    bits = 8 * lane
    total = sum(
        int.from_bytes(_widened(blob, lane), "little") << (bits * (low - base))
        for blob, low in zip(blobs, lows, strict=True)
    )
    if total <= 0:
        return None
    return _ranked_fields(base, _counts(total.to_bytes((total.bit_length() + bits - 1) // bits * lane, "little"), lane))


def _added_in_halves(blobs: Sequence[bytes], lows: Sequence[int], width: int, base: int) -> tuple[int, int] | None:
    """:func:`_added_percentile_fields` of histograms whose counts are all ``width`` bytes wide (their lowest
    fields ``lows``), added in fields twice as wide without spreading each one's counts first: each histogram is
    one integer as stored (its counts side by side); their even counts (masked out) add up in a sum whose fields
    are ``2 * width`` bytes wide, and the plain sum less that one is the odd counts' sum, in fields as wide one
    count up. The two sums are interleaved once at the end."""
    bits = 8 * width
    stored = [
        int.from_bytes(blob[3:], "little") << (bits * (low - base)) for blob, low in zip(blobs, lows, strict=True)
    ]
    pairs = (max(stored).bit_length() + 2 * bits - 1) // (2 * bits)  # the largest integer has the most bits
    if pairs == 0:
        return None
    mask = int.from_bytes((b"\xff" * width + b"\0" * width) * pairs, "little")
    lane = 2 * width
    evens = sum([x & mask for x in stored])
    odds = sum(stored) - evens  # the odd counts where they are: no shift or mask per histogram
    even = evens.to_bytes(pairs * lane, "little")
    odd = (odds >> bits).to_bytes(pairs * lane, "little")
    counts = bytearray(2 * pairs * lane)
    for byte in range(lane):
        counts[byte :: 2 * lane] = even[byte::lane]
        counts[lane + byte :: 2 * lane] = odd[byte::lane]
    return _ranked_fields(base, _counts(bytes(counts), lane))


_LANES: Final = (2, 4, 8)
"""The widths (bytes) histograms are added in."""


def _counts(raw: bytes, width: int) -> Sequence[int]:
    """Little-endian counts of ``width`` bytes each, as ints: a view of ``raw`` (no copy) on little-endian hosts."""
    if width == 1:
        return raw
    if not _LITTLE_ENDIAN:  # pragma: no cover - the counts are stored little-endian
        return [int.from_bytes(raw[i : i + width], "little") for i in range(0, len(raw), width)]
    return memoryview(raw).cast(_COUNT_FORMATS[width])


def _stored_ranking(blob: bytes) -> tuple[int, int]:
    """The fields holding a stored histogram's p50 and p95, as its row keeps them (``p50_field``, ``p95_field``)."""
    return _ranked_fields(blob[0] | blob[1] << 8, _counts(blob[3:], blob[2]))


def _ranked_fields(low: int, counts: Iterable[int]) -> tuple[int, int]:
    """The fields of ranks ⌈0.5·n⌉ and ⌈0.95·n⌉ in counts from field ``low`` on: a running sum (a C loop over the
    fields), then two binary searches."""
    running = list(accumulate(counts))
    total = running[-1]
    return (
        low + bisect_left(running, max(1, math.ceil(0.5 * total))),
        low + bisect_left(running, max(1, math.ceil(0.95 * total))),
    )


_LITTLE_ENDIAN: Final = sys.byteorder == "little"
_COUNT_FORMATS: Final[dict[int, Literal["H", "I", "Q"]]] = {2: "H", 4: "I", 8: "Q"}
"""The ``memoryview`` format of a count of each width above one byte (native order: little-endian hosts only)."""


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
    node_id: str | None = None
    """The attempt's node (dimension ``node``; the key is ``workflow_id/node_id``): where its rows' extremes are
    found again (:func:`exact_extremes`)."""


_Figures = tuple[int | None, float | None, int]
"""What one contribution adds: its cost in nano-dollars, its duration in ms and that duration's histogram field
(-1 without a duration)."""


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
    histogram: int = 0
    """Durations per field: see :func:`encode_histogram`."""

    @classmethod
    def of_figures(cls, figures: Sequence[_Figures], sign: int) -> _Sums:
        """The sums of contributions given by their figures, added (``sign`` 1) or taken away (-1): a minimum or
        maximum only when added."""
        costs = [nanos for nanos, _, _ in figures if nanos is not None]
        durations = [ms for _, ms, _ in figures if ms is not None]
        adding = sign > 0
        return cls(
            sign * len(figures),
            sign * sum(costs),
            sign * len(costs),
            min(costs) if adding and costs else None,
            max(costs) if adding and costs else None,
            sign * sum([round(ms * 1000) for ms in durations]),
            sign * len(durations),
            min(durations) if adding and durations else None,
            max(durations) if adding and durations else None,
        )

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
        self.histogram += other.histogram

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
        cmin, cmax = (None if c is None else int(c) for c in (cmin, cmax))  # a float past 2**63, a Decimal
        return cls(int(runs), int(cost), int(costs), cmin, cmax, int(dus), int(durs), dmin, dmax)

    def percentiles(self, ranked: tuple[int, int] | None) -> tuple[float | None, float | None]:
        """The p50 and p95 of the fields holding them (:func:`_percentile_fields`), clamped to min and max."""
        if ranked is None:
            return None, None
        return self._clamped(_FIELD_VALUES[ranked[0]]), self._clamped(_FIELD_VALUES[ranked[1]])

    def _clamped(self, value: float) -> float:
        if self.duration_min is not None:
            value = max(value, self.duration_min)
        if self.duration_max is not None:
            value = min(value, self.duration_max)
        return value

    def as_json(self, statuses: Sequence[tuple[str, int]], ranked: tuple[int, int] | None) -> dict[str, Any]:
        """The figures of ``GET /api/stats`` (``statuses``: the counts by status, in order; ``ranked``: the fields
        holding p50 and p95)."""
        p50, p95 = self.percentiles(ranked)
        succeeded = sum(n for s, n in statuses if s in _SUCCEEDED)
        return {
            "runs": self.runs,
            "by_status": dict(statuses),
            "success_rate": None if self.runs <= 0 else succeeded / self.runs,
            "cost_usd": {
                "total": nanos_to_usd(self.cost_nanos),
                "avg": None if self.costs <= 0 else nanos_to_usd(round(self.cost_nanos / self.costs)),
                "min": None if self.cost_min is None else nanos_to_usd(self.cost_min),
                "max": None if self.cost_max is None else nanos_to_usd(self.cost_max),
            },
            "duration_ms": {
                "avg": None if self.durations <= 0 else self.duration_us / self.durations / 1000,
                "p50": p50,
                "p95": p95,
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


def _month(ts: str) -> str:
    return ts[:7] + "-01T00:00:00.000000Z"


@lru_cache(maxsize=1024)
def _buckets(hour: str) -> tuple[tuple[str, str], ...]:
    """The (grain, bucket) of each row an hour's runs count in (a batch's runs fall in a few hours)."""
    return ((_HOUR, hour), (_DAY, _day(hour)), (_MONTH, _month(hour)))


_RowKey = tuple[str, str, str, str, str, str]
"""dim, grain, project, bucket, key, status."""
_Place = tuple[str, str, str, str, str]
"""dim, grain, project, bucket, key: where a histogram is kept."""
_ROW_COLUMNS: Final = (
    "runs, cost_nanos, costs, cost_min_nanos, cost_max_nanos, duration_us, durations, duration_ms_min, duration_ms_max"
)
_KEY_WHERE: Final = "dim = ? AND grain = ? AND project = ? AND bucket = ? AND key = ? AND status = ?"
_AGGREGATES: Final = (
    ("sum", "runs"),
    ("sum", "cost_nanos"),
    ("sum", "costs"),
    ("min", "cost_min_nanos"),
    ("max", "cost_max_nanos"),
    ("sum", "duration_us"),
    ("sum", "durations"),
    ("min", "duration_ms_min"),
    ("max", "duration_ms_max"),
)
"""How the figures of a place's rows add up (statuses together, or a range's places)."""


_WIDE_SUMS: Final = frozenset({"cost_nanos", "duration_us"})
"""Sums that may pass 2**63: money in nano-dollars (about 9.2 billion USD) and durations in microseconds (the wire
takes amounts and durations up to 2**53). PostgreSQL keeps them as ``numeric``, exact at any size. SQLite's
integers stop at 2**63: its ``+`` then gives the nearest float, as a row's upsert does, but its ``sum()`` stops
the statement with "integer overflow", so these are summed in two parts that cannot overflow (the billions, and
the rest below a billion; a row kept as a float is all in the first) and put together with ``*`` and ``+``:
exact while the total fits, the nearest float past it."""
_SQL_INT_MIN: Final = -(2**63)
_SQL_INT_MAX: Final = 2**63 - 1


def _sum_sql(column: str, integer: str) -> str:
    if column not in _WIDE_SUMS:
        return f"sum({column}){integer}"
    if integer:  # PostgreSQL: its sum of numeric is numeric, exact
        return f"sum({column})"
    rest = f"CASE WHEN typeof({column}) = 'integer' THEN {column} % 1000000000 ELSE 0 END"  # a float: all above
    return f"(sum({column} / 1000000000) * 1000000000 + sum({rest}))"


def _figures_sql(integer: str = "") -> str:
    """The aggregates of rows' figures; ``integer`` follows each sum of counts (``::bigint`` where a sum is a
    decimal); the sums of :data:`_WIDE_SUMS` are kept from overflowing."""
    return ", ".join(_sum_sql(c, integer) if f == "sum" else f"{f}({c})" for f, c in _AGGREGATES)


def _sqlite_rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows to bind on SQLite: an integer past 2**63 (a sum of :data:`_WIDE_SUMS`, or a single amount that large)
    as the nearest float, as SQLite's own ``+`` keeps it, instead of failing the statement."""
    return [
        tuple(float(v) if type(v) is int and not _SQL_INT_MIN <= v <= _SQL_INT_MAX else v for v in row) for row in rows
    ]


def _status_sums_sql(integer: str = "") -> str:
    """The runs of each status among rows (NULL for none), in the order of :data:`_STATUSES`."""
    return ", ".join(f"sum(CASE status WHEN '{s}' THEN runs END){integer}" for s in _STATUSES)


_FIGURES_SQL: Final = _figures_sql()
_STATUS_SUMS_SQL: Final = _status_sums_sql()


def _least_sql(column: str) -> str:
    return f"{column} = min(coalesce({column}, excluded.{column}), coalesce(excluded.{column}, {column}))"


def _most_sql(column: str) -> str:
    return f"{column} = max(coalesce({column}, excluded.{column}), coalesce(excluded.{column}, {column}))"


_ADD_ROW: Final = (
    f"INSERT INTO stats_rollup (dim, grain, project, bucket, key, status, {_ROW_COLUMNS}) "
    f"VALUES ({', '.join('?' * 15)}) ON CONFLICT (dim, grain, project, bucket, key, status) DO UPDATE SET "
    "runs = runs + excluded.runs, cost_nanos = cost_nanos + excluded.cost_nanos, costs = costs + excluded.costs, "
    f"{_least_sql('cost_min_nanos')}, {_most_sql('cost_max_nanos')}, "
    "duration_us = duration_us + excluded.duration_us, durations = durations + excluded.durations, "
    f"{_least_sql('duration_ms_min')}, {_most_sql('duration_ms_max')}"
)
"""Adds a delta to its row in one statement (a NULL min or max leaves the other side's): what
:meth:`_Sums.merge` does, so that a batch's rows are one ``executemany``."""
_DROP_EMPTY_ROW: Final = f"DELETE FROM stats_rollup WHERE {_KEY_WHERE} AND runs <= 0"
_PLACES_PER_READ: Final = 150
"""Places whose histograms one statement reads (five parameters each)."""
_PUT_HIST: Final = (
    "INSERT OR REPLACE INTO stats_hist (dim, grain, project, bucket, key, hist, p50_field, p95_field) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
"""Writes a histogram with the fields of its p50 and p95 (:func:`_ranked_puts`)."""
_PUT_HIST_ALONE: Final = (
    "INSERT OR REPLACE INTO stats_hist (dim, grain, project, bucket, key, hist) VALUES (?, ?, ?, ?, ?, ?)"
)
"""Writes a histogram alone: the migrations before the percentiles' columns, whose schema has none."""
_DROP_HIST: Final = "DELETE FROM stats_hist WHERE dim = ? AND grain = ? AND project = ? AND bucket = ? AND key = ?"
_PLACE_WHERE: Final = "dim = ? AND grain = ? AND project = ? AND bucket = ? AND key = ?"
_STATUS_TOTALS: Final = tuple(f"runs_{status}" for status in _STATUSES)
_TOTAL_GRAINS: Final = frozenset({_HOUR, _DAY})
"""The grains whose places' totals are kept: a series' buckets (a month is only ever a range's part)."""
STATS_TOTALS_SCHEMA: Final = f"""
-- The figures of each hour and day place of stats_rollup with its statuses added up, as a query's GROUP BY over
-- its rows gives them (runs_<status>: the runs of each status, NULL for none), kept as those rows change: a series
-- point of one whole bucket is one row, read with no GROUP BY.
CREATE TABLE IF NOT EXISTS stats_total (
    dim TEXT NOT NULL, grain TEXT NOT NULL, project TEXT NOT NULL, bucket TEXT NOT NULL, key TEXT NOT NULL,
    runs INTEGER NOT NULL,
    cost_nanos INTEGER NOT NULL, costs INTEGER NOT NULL, cost_min_nanos INTEGER, cost_max_nanos INTEGER,
    duration_us INTEGER NOT NULL, durations INTEGER NOT NULL, duration_ms_min REAL, duration_ms_max REAL,
    {", ".join(f"{c} INTEGER" for c in _STATUS_TOTALS)},
    PRIMARY KEY (dim, grain, project, bucket, key)
) WITHOUT ROWID
"""
_TOTAL_OF_ROWS: Final = (
    f"INSERT OR REPLACE INTO stats_total SELECT dim, grain, project, bucket, key, {_FIGURES_SQL}, {_STATUS_SUMS_SQL} "
    f"FROM stats_rollup WHERE {_PLACE_WHERE} GROUP BY dim, grain, project, bucket, key"
)
"""Makes a place's totals again from its rows (none when it has none left: :data:`_DROP_TOTAL` first)."""
_DROP_TOTAL: Final = f"DELETE FROM stats_total WHERE {_PLACE_WHERE}"
_TOTAL_COLUMNS: Final = f"{_ROW_COLUMNS}, {', '.join(_STATUS_TOTALS)}"
"""A ``stats_total`` row's figures, as a figures row has them after its key and point."""


def _read_hists_sql(places: int) -> str:
    """Reads the histograms of ``places`` places by their keys (a join: ``IN`` over row values would scan)."""
    return (
        f"WITH p (dim, grain, project, bucket, key) AS (VALUES {', '.join(['(?, ?, ?, ?, ?)'] * places)}) "
        "SELECT h.dim, h.grain, h.project, h.bucket, h.key, h.hist FROM p JOIN stats_hist h ON h.dim = p.dim "
        "AND h.grain = p.grain AND h.project = p.project AND h.bucket = p.bucket AND h.key = p.key"
    )


_NO_PROJECT_SCOPE: Final = (ALL_PROJECTS,)


def _scopes(project: str) -> tuple[str, ...]:
    """The projects of the rows a run counts in: its own and all projects'; a run without a project only in all
    projects' (a query is scoped to an API key's project, always a name, or to all)."""
    return _NO_PROJECT_SCOPE if not project else (project, ALL_PROJECTS)


class _Deltas:
    """What a batch adds to (and takes from) each row and each histogram."""

    def __init__(self) -> None:
        self.rows: dict[_RowKey, _Sums] = {}
        self.hists: dict[_Place, int] = {}

    def contribute(self, contributions: Iterable[Contribution], sign: int) -> None:
        # Gathered per hour first (a batch's contributions fall in a few hours), then each hour's sums are added
        # to the rows and places they count in (a grain and a scope each), so most of the work is done once per
        # hour, not once per row. A histogram is made from its hour's field counts: adding a shifted integer per
        # contribution would add numbers of thousands of bits each time. A run's dimensions come one after the
        # other with the same cost, duration and start (the same objects): their figures are worked out once.
        hours: dict[tuple[str, str, str, str, str], list[_Figures]] = {}
        last: Contribution | None = None
        figures: _Figures = (None, None, -1)
        hour = ""
        for c in contributions:
            if last is None or c.cost_usd is not last.cost_usd or c.duration_ms is not last.duration_ms:
                usd, ms = c.cost_usd, c.duration_ms
                figures = (None if usd is None else usd_to_nanos(usd), ms, -1 if ms is None else _field(ms))
            if last is None or c.started_at is not last.started_at:
                hour = _hour(c.started_at)
            last = c
            at = (c.dim.value, c.project, hour, c.key, c.status)
            group = hours.get(at)
            if group is None:
                hours[at] = [figures]
            else:
                group.append(figures)
        places: dict[tuple[str, str, str, str], dict[int, int]] = {}
        for (dim, project, hour, key, status), group in hours.items():
            self.add(dim, project, hour, key, status, _Sums.of_figures(group, sign))
            counts = places.get((dim, project, hour, key))
            if counts is None:
                counts = places[dim, project, hour, key] = {}
            for _, _, field in group:
                if field >= 0:
                    counts[field] = counts.get(field, 0) + sign
        for (dim, project, hour, key), counts in places.items():
            histogram = sum(n << (_FIELD_BITS * f) for f, n in counts.items())
            if histogram:
                self.add_histogram(dim, project, hour, key, histogram)

    def add(self, dim: str, project: str, hour: str, key: str, status: str, sums: _Sums) -> None:
        """Add an hour's sums to every row they count in."""
        for grain, bucket in _buckets(hour):
            for scope in _scopes(project):
                row_key = (dim, grain, scope, bucket, key, status)
                total = self.rows.get(row_key)
                if total is None:
                    total = self.rows[row_key] = _Sums()
                total.merge(sums)

    def add_histogram(self, dim: str, project: str, hour: str, key: str, histogram: int) -> None:
        """Add an hour's histogram to every place it counts in."""
        for grain, bucket in _buckets(hour):
            for scope in _scopes(project):
                place = (dim, grain, scope, bucket, key)
                self.hists[place] = self.hists.get(place, 0) + histogram

    def row_params(self) -> list[tuple[Any, ...]]:
        return [(*key, *delta.row()) for key, delta in self.rows.items()]

    def emptied(self) -> list[_RowKey]:
        return [key for key, delta in self.rows.items() if delta.runs < 0]

    def places(self) -> list[_Place]:
        """The hour and day places whose rows change (their totals are made again)."""
        return list(dict.fromkeys(key[:5] for key in self.rows if key[1] in _TOTAL_GRAINS))

    def emptied_places(self) -> list[_Place]:
        """The hour and day places a row may have left (their totals are dropped first)."""
        return list(dict.fromkeys(key[:5] for key in self.emptied() if key[1] in _TOTAL_GRAINS))

    def hist_writes(
        self, stored: dict[_Place, bytes]
    ) -> tuple[list[tuple[str, str, str, str, str, bytes]], list[_Place]]:
        """The histograms to write (stored plus delta) and the places left empty."""
        put: list[tuple[str, str, str, str, str, bytes]] = []
        drop: list[_Place] = []
        for place, delta in self.hists.items():
            if not delta:
                continue
            blob = stored.get(place)
            total = delta + (0 if blob is None else decode_histogram(blob))
            if total > 0:
                put.append((*place, encode_histogram(total)))
            elif blob is not None:
                drop.append(place)
        return put, drop

    def changed_places(self) -> list[list[str]]:
        """The places whose histograms change, as the parameters of their reads (a statement each)."""
        places = [place for place, delta in self.hists.items() if delta]
        return [
            [value for place in places[i : i + _PLACES_PER_READ] for value in place]
            for i in range(0, len(places), _PLACES_PER_READ)
        ]


_Fetch = Callable[[str, Sequence[Any]], Awaitable[Iterable[Sequence[Any]]]]
"""Runs one read (``?`` parameters) in the caller's transaction and gives its rows."""
_Execute = Callable[[str, Sequence[Any]], Awaitable[Any]]
"""Runs one statement (``?`` parameters) in the caller's transaction."""
_EXTREMES: Final = "cost_min_nanos, cost_max_nanos, duration_ms_min, duration_ms_max"
_READ_EXTREMES: Final = f"SELECT runs, {_EXTREMES} FROM stats_rollup WHERE {_KEY_WHERE}"
_SET_EXTREMES: Final = (
    f"UPDATE stats_rollup SET cost_min_nanos = ?, cost_max_nanos = ?, duration_ms_min = ?, duration_ms_max = ? "
    f"WHERE {_KEY_WHERE}"
)
_EXTREMES_OF_PARTS: Final = (
    "SELECT min(cost_min_nanos), max(cost_max_nanos), min(duration_ms_min), max(duration_ms_max) FROM stats_rollup "
    "WHERE dim = ? AND grain = ? AND project = ? AND bucket >= ? AND bucket < ? AND key = ? AND status = ?"
)
"""The extremes of a day's hour rows, or a month's day rows (a range of the primary key)."""
_RUN_KEY_COLUMN: Final = {StatsBy.WORKFLOW.value: "workflow_id", StatsBy.AGENT.value: "agent_id", StatsBy.PROJECT.value:
                          "project"}  # fmt: skip
_SOURCE_FIGURES: Final = "count(*), min({0}cost_usd), max({0}cost_usd), min({0}duration_ms), max({0}duration_ms)"


def _source_sql(dim: str, scope: str, key: str, node_id: str | None) -> tuple[str, list[Any], list[Any]]:
    """The read of what an hour row's stored runs (or attempts) give it: their count, then the min and max of
    their costs (USD) and durations; its parameters before the hour's bounds and the status (``?, ?, ?``), and
    after them."""
    params: list[Any] = []
    if dim == StatsBy.NODE.value:
        node = node_id or ""
        workflow = key[: len(key) - len(node) - 1]
        sql = (
            f"SELECT {_SOURCE_FIGURES.format('n.')} FROM runs r JOIN node_runs n ON n.run_id = r.run_id "
            "AND coalesce(n.project, '') = coalesce(r.project, '') WHERE "
            f"{_equals('r.workflow_id', workflow, params)} AND {_equals('n.node_id', node, params)} "
            "AND n.started_at >= ? AND n.started_at < ? AND n.status = ?"
        )
        scoped = "r.project"
    else:
        column = _RUN_KEY_COLUMN[dim]
        sql = (
            f"SELECT {_SOURCE_FIGURES.format('')} FROM runs WHERE {_equals(column, key, params)} "
            "AND started_at >= ? AND started_at < ? AND status = ?"
        )
        scoped = "project"
    if scope == ALL_PROJECTS:
        return sql, params, []
    return f"{sql} AND {scoped} = ?", params, [scope]


def _equals(column: str, value: str, params: list[Any]) -> str:
    """``column`` as a key holds ``value`` ('' for NULL too), its parameter appended to ``params``."""
    if value:
        params.append(value)
        return f"{column} = ?"
    return f"({column} IS NULL OR {column} = '')"


_INEXACT_NANOS: Final = 2**63
"""Cost extremes from here on are held as floats (SQLite's REAL), not exact: any value may have been one."""


def _held_cost(nanos: int | None, extreme: Any) -> bool:
    """Whether a cost taken out of a row may have been its min or max ``extreme`` (nano-dollars)."""
    if extreme is None or nanos is None:
        return False
    return bool(nanos == extreme or (type(extreme) is float and abs(extreme) >= _INEXACT_NANOS))


def _held_duration(duration_ms: float | None, extreme: Any) -> bool:
    """Whether a duration taken out of a row was its min or max ``extreme`` (both the same float: exact)."""
    return extreme is not None and duration_ms is not None and duration_ms == extreme


async def exact_extremes(removed: Iterable[Contribution], fetch: _Fetch, execute: _Execute) -> None:
    """Find again the min and max of the rows contributions were taken out of (their deltas already written), so
    that they are those of what the rows still count (before their places' totals are made again).

    An hour row whose min or max a removed value held is given those of the stored runs (or attempts) it counts,
    read from ``runs`` (``node_runs``) within its hour: only when they are all of its runs, so a row that also
    counts purged runs, whose values are gone, keeps its own (the values it keeps are its runs' all the same, or
    were). A day row whose hours changed takes its hours' extremes, a month row its days'. At ingest a fold
    seldom takes a run out (a late finish that wins, a run's identity set late), so this reads a row per removed
    contribution and its place, and the stored runs of an hour only when a removed value was at an edge."""
    held: dict[_RowKey, list[tuple[int | None, float | None]]] = {}
    node_ids: dict[_RowKey, str | None] = {}
    for c in removed:
        hour = _hour(c.started_at)
        nanos = None if c.cost_usd is None else usd_to_nanos(c.cost_usd)
        for scope in _scopes(c.project):
            row = (c.dim.value, _HOUR, scope, hour, c.key, c.status)
            held.setdefault(row, []).append((nanos, c.duration_ms))
            node_ids[row] = c.node_id
    parents: set[tuple[str, str, str, str, str]] = set()
    for row, values in held.items():
        found = list(await fetch(_READ_EXTREMES, row))
        if not found:  # emptied: its day and month lost what it had
            parents.add((row[0], row[2], row[3], row[4], row[5]))
            continue
        runs, cmin, cmax, dmin, dmax = found[0]
        if not any(
            _held_cost(n, cmin) or _held_cost(n, cmax) or _held_duration(ms, dmin) or _held_duration(ms, dmax)
            for n, ms in values
        ):
            continue
        sql, before, after = _source_sql(row[0], row[2], row[4], node_ids[row])
        hour = row[3]
        stored = list(await fetch(sql, [*before, hour, hour[:13] + ";", row[5], *after]))
        count, usd_min, usd_max, ms_min, ms_max = stored[0]
        if int(count) != int(runs):  # purged runs count in it too: their values are not stored any more
            continue
        extremes = (
            None if usd_min is None else usd_to_nanos(usd_min),
            None if usd_max is None else usd_to_nanos(usd_max),
            ms_min,
            ms_max,
        )
        if extremes != (cmin, cmax, dmin, dmax):
            await execute(_SET_EXTREMES, [*extremes, *row])
            parents.add((row[0], row[2], row[3], row[4], row[5]))
    for dim, scope, hour, key, status in sorted(parents):
        day, month = _day(hour), _month(hour)
        for grain, bucket, part, low, high in (
            (_DAY, day, _HOUR, day, _next_day(day)),
            (_MONTH, month, _DAY, month, _next_month(month)),
        ):
            (of_parts,) = list(await fetch(_EXTREMES_OF_PARTS, (dim, part, scope, low, high, key, status)))
            await execute(_SET_EXTREMES, [*of_parts, dim, grain, scope, bucket, key, status])


def _stored(rows: Iterable[Sequence[Any]]) -> dict[_Place, bytes]:
    return {(str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4])): bytes(r[5]) for r in rows}


def _ranked_puts(put: Iterable[tuple[str, str, str, str, str, bytes]]) -> list[tuple[Any, ...]]:
    """The histograms to write, each with the fields of its p50 and p95 (:data:`_PUT_HIST`)."""
    return [(*row, *_stored_ranking(row[5])) for row in put]


async def record_contributions(
    conn: WriteConnection, added: Iterable[Contribution], removed: Sequence[Contribution], *, extremes: bool = True
) -> None:
    """Add and take away contributions (inside the caller's transaction); ``extremes``: find the min and max of the
    rows they leave again (:func:`exact_extremes`; a rebuild taking every stored run out has no use for it)."""
    deltas = _Deltas()
    deltas.contribute(added, 1)
    deltas.contribute(removed, -1)
    if deltas.rows:  # one statement for the batch: a row a statement would hand each one to the database thread
        await conn.executemany(_ADD_ROW, _sqlite_rows(deltas.row_params()))
        emptied = deltas.emptied()
        if emptied:
            await conn.executemany(_DROP_EMPTY_ROW, emptied)
            await conn.executemany(_DROP_TOTAL, deltas.emptied_places())
        if removed and extremes:

            async def execute(sql: str, params: Sequence[Any]) -> None:
                await conn.execute(sql, _sqlite_rows([tuple(params)])[0])

            await exact_extremes(removed, lambda sql, params: conn.execute_fetchall(sql, params), execute)
        await conn.executemany(_TOTAL_OF_ROWS, deltas.places())
    stored: dict[_Place, bytes] = {}
    for params in deltas.changed_places():
        stored |= _stored(await conn.execute_fetchall(_read_hists_sql(len(params) // 5), params))
    put, drop = deltas.hist_writes(stored)
    if put:
        await conn.executemany(_PUT_HIST, _ranked_puts(put))
    if drop:
        await conn.executemany(_DROP_HIST, drop)


def _write_sync(conn: sqlite3.Connection, deltas: _Deltas) -> None:
    conn.executemany(_ADD_ROW, _sqlite_rows(deltas.row_params()))
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'stats_total'").fetchone():
        conn.executemany(_TOTAL_OF_ROWS, deltas.places())  # (the migrations before it make it at the end)
    stored: dict[_Place, bytes] = {}
    for params in deltas.changed_places():
        stored |= _stored(conn.execute(_read_hists_sql(len(params) // 5), params).fetchall())
    put, drop = deltas.hist_writes(stored)
    if _STORED_PERCENTILES[0] in {str(c[1]) for c in conn.execute("PRAGMA table_info(stats_hist)")}:
        conn.executemany(_PUT_HIST, _ranked_puts(put))
    else:  # a migration before the percentiles' columns
        conn.executemany(_PUT_HIST_ALONE, put)
    conn.executemany(_DROP_HIST, drop)


def record_contributions_sync(conn: sqlite3.Connection, added: Iterable[Contribution]) -> None:
    """:func:`record_contributions` (adding only) on a plain sqlite3 connection, for migrations."""
    deltas = _Deltas()
    deltas.contribute(added, 1)
    _write_sync(conn, deltas)


def store_percentiles_sync(conn: sqlite3.Connection) -> None:
    """Give ``stats_hist`` the fields of each histogram's p50 and p95 (:data:`STORED_PERCENTILES_SCHEMA`) and fill
    them for the histograms stored without them (the migration adding them calls this), a chunk at a time in the
    order of the primary key."""
    columns = {str(c[1]) for c in conn.execute("PRAGMA table_info(stats_hist)")}
    for column, statement in zip(_STORED_PERCENTILES, STORED_PERCENTILES_SCHEMA, strict=True):
        if column not in columns:  # a database rewound by a test may have them already
            conn.execute(statement)
    after: tuple[str, ...] = ("", "", "", "", "")
    while True:
        rows = conn.execute(
            "SELECT dim, grain, project, bucket, key, hist FROM stats_hist "
            "WHERE (dim, grain, project, bucket, key) > (?, ?, ?, ?, ?) ORDER BY dim, grain, project, bucket, key "
            "LIMIT ?",
            (*after, _RANKING_CHUNK),
        ).fetchall()
        if not rows:
            return
        after = tuple(str(v) for v in rows[-1][:5])
        conn.executemany(
            "UPDATE stats_hist SET p50_field = ?, p95_field = ? "
            "WHERE dim = ? AND grain = ? AND project = ? AND bucket = ? AND key = ?",
            [(*_stored_ranking(bytes(row[5])), *row[:5]) for row in rows],
        )


_RANKING_CHUNK: Final = 20_000


def keep_totals_sync(conn: sqlite3.Connection) -> None:
    """Make ``stats_total`` (:data:`STATS_TOTALS_SCHEMA`) and fill it from every place's rows (the migration adding
    it calls this; a database rewound by a test may have it already, its rows are made again)."""
    conn.execute(STATS_TOTALS_SCHEMA)
    conn.execute("DELETE FROM stats_total")
    conn.execute(
        f"INSERT INTO stats_total SELECT dim, grain, project, bucket, key, {_FIGURES_SQL}, {_STATUS_SUMS_SQL} "
        f"FROM stats_rollup WHERE grain IN ({', '.join(repr(g) for g in sorted(_TOTAL_GRAINS))}) "
        "GROUP BY dim, grain, project, bucket, key"
    )


_V1_ZERO_BIN: Final = -(10**6)


def upgrade_rollups_sync(conn: sqlite3.Connection) -> None:
    """Rows of the first layout (hour and day rows per project, a row per histogram bin) made into this one's:
    each hour row, with its bins, is added to its hour, day and month rows, for its project and all projects."""
    old = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'stats_bins'").fetchone()
    if old is None:  # made in this layout
        return
    conn.execute("ALTER TABLE stats_rollup RENAME TO stats_rollup_v1")
    for statement in STATS_SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    days = [d for (d,) in conn.execute("SELECT bucket FROM stats_rollup_v1 WHERE grain = 'd' GROUP BY 1 ORDER BY 1")]
    for day in days:  # a day at a time (its month rows add up over the days, as they do at ingest)
        low, high = day, _next_day(day)
        deltas = _Deltas()
        for row in conn.execute(
            f"SELECT dim, project, bucket, key, status, {_ROW_COLUMNS} FROM stats_rollup_v1 "
            "WHERE grain = 'h' AND bucket >= ? AND bucket < ?",
            (low, high),
        ):
            deltas.add(str(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]), _Sums.of_row(row[5:]))
        histograms: dict[tuple[str, str, str, str], int] = {}
        for dim, project, bucket, key, b, count in conn.execute(
            "SELECT dim, project, bucket, key, bin, count FROM stats_bins WHERE grain = 'h' AND bucket >= ? "
            "AND bucket < ?",
            (low, high),
        ):
            field = 0 if b == _V1_ZERO_BIN else min(max(int(b), _MIN_BIN), _MAX_BIN) - _MIN_BIN + 1
            place = (str(dim), str(project), str(bucket), str(key))
            histograms[place] = histograms.get(place, 0) + (int(count) << (_FIELD_BITS * field))
        for (dim, project, bucket, key), histogram in histograms.items():
            deltas.add_histogram(dim, project, bucket, key, histogram)
        _write_sync(conn, deltas)
    conn.execute("DROP TABLE stats_rollup_v1")
    conn.execute("DROP TABLE stats_bins")


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


def _plan(since: str | None, until: str | None, bucket: Bucket | None) -> list[tuple[str, str | None, str | None]]:
    """The (grain, from, before) ranges of rollup rows that cover [since, until) exactly once: hours at the edges,
    then whole days (day buckets stop there), then whole months."""
    since, until = _four_digit_year(since), _four_digit_year(until)
    start = None if since is None else _hour(since)
    if bucket is Bucket.HOUR:
        return [(_HOUR, start, until)]
    # Whole days from day rows; the hours before the first whole day and after the last from hour rows.
    first_day = None if start is None else (start if start == _day(start) else _next_day(start))
    last_day = None if until is None else _day(until)  # the days before until's own day end by until
    if first_day is not None and last_day is not None and first_day >= last_day:
        return [(_HOUR, start, until)]
    ranges: list[tuple[str, str | None, str | None]] = []
    if start is not None and first_day is not None and start < first_day:
        ranges.append((_HOUR, start, first_day))
    if until is not None and last_day is not None and last_day < until:
        ranges.append((_HOUR, last_day, until))
    first_month = None if first_day is None else (first_day if first_day == _month(first_day) else None)
    if first_day is not None and first_month is None:
        first_month = _next_month(first_day)
    last_month = None if last_day is None else _month(last_day)
    if bucket is Bucket.DAY or (first_month is not None and last_month is not None and first_month >= last_month):
        return [*ranges, (_DAY, first_day, last_day)]
    ranges.append((_MONTH, first_month, last_month))
    if first_day is not None and first_month is not None and first_day < first_month:
        ranges.append((_DAY, first_day, first_month))
    if last_day is not None and last_month is not None and last_month < last_day:
        ranges.append((_DAY, last_month, last_day))
    return ranges


_BEFORE_YEAR_1000: Final = "0000-01-01T00:00:00.000000Z"
"""Where a bound before the year 1000 is taken to fall: before every row (rows and bounds are cut by position)."""


def _four_digit_year(ts: str | None) -> str | None:
    """``ts``, or :data:`_BEFORE_YEAR_1000` when its year has fewer than four digits (earlier receivers wrote
    years before 1000 unpadded, as ``strftime`` does), so that the rows' buckets can be cut from it."""
    return ts if ts is None or (ts[:4].isdigit() and ts[4:5] == "-") else _BEFORE_YEAR_1000


_AFTER_YEAR_9999: Final = "9999-12-32T00:00:00.000000Z"
"""The day after the last one a timestamp can have: after every row, and a day and a month boundary of itself."""


def _next_day(hour: str) -> str:
    if hour[:10] == "9999-12-31":
        return _AFTER_YEAR_9999
    day = datetime.fromisoformat(hour[:10]) + timedelta(days=1)
    return f"{day.year:04d}-{day.month:02d}-{day.day:02d}T00:00:00.000000Z"


def _next_month(day: str) -> str:
    if day[:7] == "9999-12":
        return _AFTER_YEAR_9999
    year, month = int(day[:4]), int(day[5:7])
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return f"{year:04d}-{month:02d}-01T00:00:00.000000Z"


_POINT_SQL: Final = {None: "''", Bucket.HOUR: "bucket", Bucket.DAY: "substr(bucket, 1, 10) || 'T00:00:00.000000Z'"}
"""A series point: the bucket itself (hours) or its day; "" gathers a group's whole range."""
_BUCKET_GRAIN: Final[dict[Bucket | None, str]] = {Bucket.HOUR: _HOUR, Bucket.DAY: _DAY}
"""The grain whose rows are each one point of a series in these buckets."""


def _ranges_sql(
    query: StatsQuery, columns: str, table: str, *, grouped: bool = False, totals: bool = False
) -> tuple[str, list[Any]]:
    """One ``SELECT key, point, <columns>`` over the rows of every range of the query's plan; ``grouped``: each
    range's rows added up per (point, key) by itself, which a series may do (its ranges hold different points:
    the edges' hours are the days before and after the whole days), and rows of the bucket's own grain then in
    the order of the primary key (``GROUP BY bucket, key``: no sorting), or with ``totals`` read as their places'
    totals (``stats_total``, one row a point, nothing to add up)."""
    scope = ALL_PROJECTS if query.project is None else query.project
    parts: list[str] = []
    params: list[Any] = []
    for grain, low, high in _plan(query.since, query.until, query.bucket):
        clauses = ["dim = ?", "grain = ?", "project = ?"]
        params += [query.by.value, grain, scope]
        if low is not None:
            clauses.append("bucket >= ?")
            params.append(low)
        if high is not None:
            clauses.append("bucket < ?")
            params.append(high)
        point = "bucket" if grain == _BUCKET_GRAIN.get(query.bucket) else _POINT_SQL[query.bucket]
        where = " AND ".join(clauses)
        if grouped and totals and point == "bucket":
            parts.append(f"SELECT key, bucket AS point, {_TOTAL_COLUMNS} FROM stats_total WHERE {where}")
            continue
        group = f" GROUP BY {'bucket' if point == 'bucket' else 'point'}, key" if grouped else ""
        parts.append(f"SELECT key, {point} AS point, {columns} FROM {table} WHERE {where}{group}")
    return " UNION ALL ".join(parts), params


FiguresReader = Callable[["StatsQuery"], Awaitable[tuple[Iterable[Sequence[Any]], "_Histograms"]]]
"""Reads a query's figures rows and its histograms (what :func:`stats_answer` adds up)."""


async def stats_groups(conn: aiosqlite.Connection, query: StatsQuery) -> list[dict[str, Any]]:
    """The statistics of each group, most runs first, as ``GET /api/stats`` answers them.

    SQLite adds up the rows (``GROUP BY``; a series' ranges each by themselves, in the order of the primary key):
    Python reads one row per group (or per series point), with its counts by status, and the histograms of the
    places it covers; the sum of a group's histograms (as integers) gives its percentiles
    (:func:`_added_percentile_fields`). Hour buckets' groups are read as the same query without buckets (a week of
    hours is a week of days and a few hours: the same sums from fewer rows); a series' points each from their own
    row and histograms (a whole bucket's p50 and p95 as stored beside its histogram).
    """
    return await stats_answer(query, lambda q: _read_figures(conn, q))


async def stats_answer(query: StatsQuery, read: FiguresReader) -> list[dict[str, Any]]:
    """:func:`stats_groups` over any engine: ``read`` reads a query's figures (:func:`stats_reads` has its SQL)."""
    if query.since is not None and query.until is not None and query.since >= query.until:
        return []
    figures, blobs = await read(query)
    if query.bucket is Bucket.HOUR:  # its groups from the same query without buckets: fewer rows and histograms
        out = await stats_answer(replace(query, bucket=None), read)
    else:
        out = _groups_json(figures, blobs, query.limit)
    if query.bucket is not None:
        series = _series(figures, blobs, [group["key"] for group in out])
        for group in out:
            group["series"] = series[group["key"]]
    return out


def _groups_json(figures: Iterable[Sequence[Any]], blobs: _Histograms, limit: int) -> list[dict[str, Any]]:
    """The groups of a query's figures rows, most runs first, without their series."""
    rows_of: dict[str, list[Sequence[Any]]] = {}
    for row in figures:
        rows = rows_of.get(row[0])
        if rows is None:
            rows = rows_of[row[0]] = []
        rows.append(row)
    groups = {key: _group_sums(rows, blobs) for key, rows in rows_of.items()}
    out: list[dict[str, Any]] = []
    for key in sorted(groups, key=lambda k: (-groups[k][0].runs, k))[:limit]:
        total, counts, ranked = groups[key]
        listed = [(s, n) for s, n in zip(_STATUSES, counts, strict=True) if n]
        out.append({"key": key, **total.as_json(listed, ranked)})
    return out


class _Histograms(NamedTuple):
    """A query's histograms."""

    parts: dict[tuple[str, str], list[bytes]]
    """The histograms of each (key, point), as stored (:func:`encode_histogram`)."""
    ranked: dict[tuple[str, str], tuple[int, int]]
    """The p50 and p95 fields stored beside the histogram of each (key, point) that one histogram makes alone
    (a whole bucket of a series, or a single place): the fields :func:`_added_percentile_fields` would find."""


async def _read_figures(conn: aiosqlite.Connection, query: StatsQuery) -> tuple[Iterable[Sequence[Any]], _Histograms]:
    """The figures rows of a query (``key, point``, the aggregates, the counts by status) and its histograms."""
    (figures_sql, params), (hists_sql, hists_params) = stats_reads(query, kept=True)
    figures = await conn.execute_fetchall(figures_sql, params)
    return figures, stats_blobs(await conn.execute_fetchall(hists_sql, hists_params))


_STATUS_COLUMNS: Final = range(11, 11 + len(_STATUSES))
"""Where a figures row (``key, point``, the aggregates, then the counts by status) has its counts by status."""
_SUCCEEDED_AT: Final = tuple(i for i, status in enumerate(_STATUSES) if status in _SUCCEEDED)
"""Where the counts by status (a figures row from its column 11 on) have the succeeded ones."""


def _series(
    figures: Iterable[Sequence[Any]], blobs: _Histograms, keys: Iterable[str]
) -> dict[str, list[dict[str, Any]]]:
    """The series of the groups ``keys``: each point (oldest first) as :meth:`_Sums.as_json` gives it, from its
    figures row and its histograms, with no :class:`_Sums` in between.

    A long series has thousands of points (100 nodes over 30 days: 3,100), so the work per point is kept to one
    loop, its functions bound once: a whole bucket's p50 and p95 fields as stored beside its histogram, the
    histograms of several (an edge day's hours) added, the counts by status taken from the row as they stand."""
    series: dict[str, list[dict[str, Any]]] = {key: [] for key in keys}
    stored_of, blobs_of, points_of, added = blobs.ranked.get, blobs.parts.get, series.get, _added_percentile_fields
    values, statuses, succeeded, usd = _FIELD_VALUES, _STATUSES, _SUCCEEDED_AT, nanos_to_usd
    for row in sorted(figures, key=itemgetter(0, 1)):
        key, start, runs, cost, costs, cmin, cmax, dus, durs, dmin, dmax = row[:11]
        points = points_of(key)
        if points is None:
            continue
        place = (key, start)
        ranked = stored_of(place)
        if ranked is None:
            parts = blobs_of(place)
            ranked = None if parts is None else added(parts)
        if ranked is None:
            p50 = p95 = None
        else:  # clamped to the point's min and max (what max() and min() would give, without their calls)
            p50, p95 = values[ranked[0]], values[ranked[1]]
            if dmin is not None:
                if p50 < dmin:
                    p50 = dmin
                if p95 < dmin:
                    p95 = dmin
            if dmax is not None:
                if p50 > dmax:
                    p50 = dmax
                if p95 > dmax:
                    p95 = dmax
        counts = row[11:]
        ok = 0
        for i in succeeded:
            ok += counts[i] or 0
        points.append(
            {
                "start": start,
                "runs": runs,
                "by_status": dict(compress(zip(statuses, counts, strict=True), counts)),  # those counted, in C
                "success_rate": None if runs <= 0 else ok / runs,
                "cost_usd": {
                    "total": usd(cost),
                    "avg": None if costs <= 0 else usd(round(cost / costs)),
                    "min": None if cmin is None else usd(cmin),
                    "max": None if cmax is None else usd(cmax),
                },
                "duration_ms": {"avg": None if durs <= 0 else dus / durs / 1000, "p50": p50, "p95": p95},
            }
        )
    return series


def _group_sums(rows: list[Sequence[Any]], blobs: _Histograms) -> tuple[_Sums, list[int], tuple[int, int] | None]:
    """A group's figures (its points' rows added up a column at a time), its counts by status and the fields
    holding its p50 and p95."""
    columns = list(zip(*rows, strict=True))
    runs, cost, costs, cmin, cmax, dus, durs, dmin, dmax = columns[2:11]
    total = _Sums(
        sum(runs),
        sum(cost),
        sum(costs),
        min((v for v in cmin if v is not None), default=None),
        max((v for v in cmax if v is not None), default=None),
        sum(dus),
        sum(durs),
        min((v for v in dmin if v is not None), default=None),
        max((v for v in dmax if v is not None), default=None),
    )
    if len(rows) == 1:  # one point: its stored fields when one histogram makes it
        ranked = blobs.ranked.get((rows[0][0], rows[0][1]))
        if ranked is not None:
            return total, [sum(filter(None, columns[i])) for i in _STATUS_COLUMNS], ranked
    parts = [blob for row in rows for blob in blobs.parts.get((row[0], row[1]), ())]
    ranked = _added_percentile_fields(parts) if parts else None
    return total, [sum(filter(None, columns[i])) for i in _STATUS_COLUMNS], ranked


# --- engine-neutral pieces another engine's statistics are made of ---

StatsDeltas = _Deltas
"""What a batch adds to (and takes from) each rollup row (``rows``) and each histogram place (``hists``)."""
STATS_ROW_COLUMNS: Final = _ROW_COLUMNS
"""The figures columns of a ``stats_rollup`` row, after its key (dim, grain, project, bucket, key, status)."""


def stats_deltas(added: Iterable[Contribution], removed: Iterable[Contribution]) -> StatsDeltas:
    """What contributions added and taken away do to the rows and histograms."""
    deltas = _Deltas()
    deltas.contribute(added, 1)
    deltas.contribute(removed, -1)
    return deltas


def stats_reads(
    query: StatsQuery, *, integer: str = "", kept: bool = False
) -> tuple[tuple[str, list[Any]], tuple[str, list[Any]]]:
    """The two reads of a query (``?`` parameters): its figures rows (``key, point``, the aggregates, the counts by
    status, one row per group and point) and its histograms (``key, point, hist``). ``integer`` follows each sum
    (an engine whose sum of integers is a decimal casts it back: ``::bigint``). ``kept``: the engine keeps each
    place's totals (``stats_total``: a series' whole buckets are read from them) and each histogram's p50 and p95
    fields (read after it: ``p50_field, p95_field``)."""
    figures, statuses = _figures_sql(integer), _status_sums_sql(integer)
    if query.bucket is None:  # every range adds to the same point: added up together
        rows_sql, params = _ranges_sql(query, f"status, {_ROW_COLUMNS}", "stats_rollup")
        figures_sql = f"SELECT key, point, {figures}, {statuses} FROM ({rows_sql}) AS placed GROUP BY 1, 2"
    else:
        figures_sql, params = _ranges_sql(query, f"{figures}, {statuses}", "stats_rollup", grouped=True, totals=kept)
    # a point of one histogram is a series': a query without buckets adds up several per group
    hists = f"hist, {', '.join(_STORED_PERCENTILES)}" if kept and query.bucket is not None else "hist"
    return (figures_sql, params), _ranges_sql(query, hists, "stats_hist")


def stats_blobs(rows: Iterable[Sequence[Any]]) -> _Histograms:
    """The histograms of a query's ``key, point, hist`` rows (and their stored ``p50_field, p95_field``, when the
    rows have them), by (key, point), as stored."""
    blobs = _Histograms({}, {})
    parts_of, ranked = blobs.parts, blobs.ranked
    for row in rows:
        place = (row[0], row[1])
        parts = parts_of.get(place)
        if parts is None:
            parts_of[place] = [row[2]]
            if len(row) > 3 and row[3] is not None:
                ranked[place] = (row[3], row[4])
        else:
            parts.append(row[2])
            if len(parts) == 2:  # several histograms: their sum is ranked at read time
                ranked.pop(place, None)
    return blobs
