"""Statistics on PostgreSQL: the rollups of :mod:`.._stats` (``stats_rollup``, ``stats_hist``), written and read.

Everything but the statements is :mod:`.._stats`'s: the rows and histogram
places a finished run or attempt counts in and what a batch adds to each
(:func:`~.._stats.stats_deltas`), the histogram's encoding, the plan of rows
a query reads and their SQL (:func:`~.._stats.stats_reads`), and the sums,
percentiles and JSON of the answer (:func:`~.._stats.stats_answer`), so both
engines answer the same figures. Here a batch's row deltas are added with one
``unnest`` upsert (``least``/``greatest`` keep min and max, ignoring NULLs as
SQLite's ``coalesce``-d pairs do), its histograms read with one join and
written with one upsert; sums of integers are cast back from ``numeric``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

from flowledger.receiver.store._stats import (
    STATS_ROW_COLUMNS,
    Contribution,
    StatsQuery,
    exact_extremes,
    stats_answer,
    stats_blobs,
    stats_deltas,
    stats_reads,
)
from flowledger.receiver.store.postgres._dialect import numbered

if TYPE_CHECKING:
    import asyncpg

    from flowledger.receiver.store._stats import FiguresReader

__all__ = ["exact_pg_extremes_of", "pg_stats_groups", "record_pg_contributions"]

_KEY: Final = ("dim", "grain", "project", "bucket", "key", "status")
_FIGURES: Final = tuple(c.strip() for c in STATS_ROW_COLUMNS.split(","))
_FIGURE_TYPES: Final = {
    "duration_ms_min": "float8",
    "duration_ms_max": "float8",
    **dict.fromkeys(("cost_nanos", "cost_min_nanos", "cost_max_nanos", "duration_us"), "numeric"),
}
_ADD_ROWS: Final = (
    f"INSERT INTO stats_rollup AS s ({', '.join(_KEY)}, {STATS_ROW_COLUMNS}) SELECT * FROM unnest("
    + ", ".join(
        [f"${i + 1}::text[]" for i in range(len(_KEY))]
        + [f"${len(_KEY) + i + 1}::{_FIGURE_TYPES.get(c, 'bigint')}[]" for i, c in enumerate(_FIGURES)]
    )
    + f") ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET "
    + ", ".join(
        f"{c} = least(s.{c}, EXCLUDED.{c})"
        if c.endswith(("_min", "_min_nanos"))
        else f"{c} = greatest(s.{c}, EXCLUDED.{c})"
        if c.endswith(("_max", "_max_nanos"))
        else f"{c} = s.{c} + EXCLUDED.{c}"
        for c in _FIGURES
    )
)
"""Adds a batch's deltas to their rows in one statement (what ``_Sums.merge`` does, as SQLite's upsert)."""
_ROW_KEYS: Final = "unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) AS k ({})"
_DROP_EMPTY_ROWS: Final = (
    f"DELETE FROM stats_rollup s USING {_ROW_KEYS.format(', '.join(_KEY))} "
    f"WHERE ({', '.join(f's.{c}' for c in _KEY)}) = ({', '.join(f'k.{c}' for c in _KEY)}) AND s.runs <= 0"
)
_PLACE: Final = _KEY[:-1]
_PLACES: Final = "unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS k ({})".format(
    ", ".join(_PLACE)
)
_READ_HISTS: Final = (
    f"SELECT {', '.join(f'h.{c}' for c in _PLACE)}, h.hist FROM {_PLACES} JOIN stats_hist h USING ({', '.join(_PLACE)})"
)
_PUT_HISTS: Final = (
    f"INSERT INTO stats_hist ({', '.join(_PLACE)}, hist) SELECT * FROM unnest($1::text[], $2::text[], $3::text[], "
    f"$4::text[], $5::text[], $6::bytea[]) ON CONFLICT ({', '.join(_PLACE)}) DO UPDATE SET hist = EXCLUDED.hist"
)
_DROP_HISTS: Final = (
    f"DELETE FROM stats_hist h USING {_PLACES} "
    f"WHERE ({', '.join(f'h.{c}' for c in _PLACE)}) = ({', '.join(f'k.{c}' for c in _PLACE)})"
)


@lru_cache(maxsize=64)
def _numbered(sql: str) -> str:
    return numbered(sql)


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


async def record_pg_contributions(
    conn: asyncpg.Connection, added: Iterable[Contribution], removed: Sequence[Contribution], *, extremes: bool = True
) -> None:
    """Add and take away contributions (inside the caller's transaction): a few statements per batch; ``extremes``:
    find the min and max of the rows they leave again (:func:`~.._stats.exact_extremes`)."""
    deltas = stats_deltas(added, removed)
    if deltas.rows:
        await conn.execute(_ADD_ROWS, *_columns(deltas.row_params(), len(_KEY) + len(_FIGURES)))
        emptied = deltas.emptied()
        if emptied:
            await conn.execute(_DROP_EMPTY_ROWS, *_columns(emptied, len(_KEY)))
        if removed and extremes:
            await exact_pg_extremes_of(conn, removed)
    places = [place for place, delta in deltas.hists.items() if delta]
    if not places:
        return
    stored = {
        (str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4])): bytes(r[5])
        for r in await conn.fetch(_READ_HISTS, *_columns(places, len(_PLACE)))
    }
    put, drop = deltas.hist_writes(stored)
    if put:
        await conn.execute(_PUT_HISTS, *_columns(put, len(_PLACE) + 1))
    if drop:
        await conn.execute(_DROP_HISTS, *_columns(drop, len(_PLACE)))


async def exact_pg_extremes_of(conn: asyncpg.Connection, removed: Sequence[Contribution]) -> None:
    """:func:`~.._stats.exact_extremes` on this engine: the rows ``removed`` left (their deltas written, and the runs
    and attempts they read saved) take the min and max of what they still count."""

    async def fetch(sql: str, params: Sequence[Any]) -> list[Any]:
        return list(await conn.fetch(_numbered(sql), *params))

    async def execute(sql: str, params: Sequence[Any]) -> None:
        await conn.execute(_numbered(sql), *params)

    await exact_extremes(removed, fetch, execute)


def _reader(conn: asyncpg.Connection) -> FiguresReader:
    async def read(query: StatsQuery) -> tuple[list[tuple[Any, ...]], Any]:
        (figures_sql, figures_params), (hists_sql, hists_params) = stats_reads(query, integer="::bigint")
        figures = [  # the numeric sums of money and durations (whole numbers) as the integers SQLite gives
            tuple(int(v) if type(v) is Decimal else v for v in row)
            for row in await conn.fetch(numbered(figures_sql), *figures_params)
        ]
        return figures, stats_blobs(await conn.fetch(numbered(hists_sql), *hists_params))

    return read


async def pg_stats_groups(conn: asyncpg.Connection, query: StatsQuery) -> list[dict[str, Any]]:
    """The statistics of each group, most runs first, as ``GET /api/stats`` answers them (on one snapshot)."""
    return await stats_answer(query, _reader(conn))
