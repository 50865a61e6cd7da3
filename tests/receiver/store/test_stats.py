"""Statistics storage: the histogram's encoding and percentile bound, the percentiles stored beside each histogram,
and the upgrades from earlier layouts."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowledger._wire import format_datetime
from flowledger.receiver.store import _stats
from flowledger.receiver.store._migrations import (
    MIGRATIONS,
    _percentiles_stored_beside_histograms,
    _stats_for_all_projects_and_by_month,
)
from flowledger.receiver.store._protocol import PurgeSelection
from flowledger.receiver.store._sqlite import SqliteStore
from flowledger.receiver.store._stats import (
    PERCENTILE_RELATIVE_ERROR,
    Bucket,
    StatsBy,
    StatsQuery,
    decode_histogram,
    encode_histogram,
)
from tests.receiver._support import RunEvents
from tests.receiver.store._rewrite import run_counts_as_before, store_entry_bytes
from tests.receiver.store.conformance.conftest import prepared

_durations = st.lists(
    st.one_of(st.just(0.0), st.floats(0.001, 1e10, allow_nan=False), st.integers(1, 100).map(float)),
    min_size=1,
    max_size=300,
)


def _histogram(durations: list[float]) -> _stats._Sums:
    sums = _stats._Sums.of_figures([(None, ms, _stats._field(ms)) for ms in durations], 1)
    for ms in durations:
        sums.histogram += 1 << (64 * _stats._field(ms))
    return sums


@settings(max_examples=300, deadline=None)
@given(durations=_durations, split=st.integers(0, 300))
def test_percentiles_of_added_histograms_are_within_the_stated_bound(durations: list[float], split: int) -> None:
    """Two histograms stored, read back and added answer p50 and p95 within PERCENTILE_RELATIVE_ERROR (1 %) of
    the exact nearest-rank percentile of all the durations, from 1 µs to 10**10 ms; zero exactly."""
    left, right = _histogram(durations[:split]), _histogram(durations[split:])
    total = _stats._Sums()
    blobs: list[bytes] = []
    for part in (left, right):
        stored = _stats._Sums(duration_min=part.duration_min, duration_max=part.duration_max)
        if part.histogram:
            blobs.append(encode_histogram(part.histogram))
            stored.histogram = decode_histogram(blobs[-1])
            assert stored.histogram == part.histogram
        total.merge(stored)
    fields = _stats._fields_of(total.histogram)
    assert fields is not None
    ranked = _stats._percentile_fields(*fields)
    assert _stats._added_percentile_fields(blobs) == ranked  # as a query adds them: from the stored counts
    ordered = sorted(durations)
    for p, got in zip((0.5, 0.95), total.percentiles(ranked), strict=True):
        exact = ordered[max(1, math.ceil(p * len(ordered))) - 1]
        assert got is not None
        assert abs(got - exact) <= exact * PERCENTILE_RELATIVE_ERROR * (1 + 1e-9), (p, got, exact)
    assert PERCENTILE_RELATIVE_ERROR < 0.01


@pytest.mark.parametrize("largest", [1, 255, 256, 2**16, 2**32 - 1, 2**32, 2**64 - 1])
def test_a_stored_histogram_keeps_counts_of_any_width(largest: int) -> None:
    """Counts are stored as wide as the largest needs (1, 2, 4 or 8 bytes) and read back exactly, from any field."""
    histogram = (largest << (64 * 40)) | (1 << (64 * 3)) | (7 << (64 * 900))
    blob = encode_histogram(histogram)
    width = 1 if largest < 2**8 else 2 if largest < 2**16 else 4 if largest < 2**32 else 8
    assert blob[2] == width
    assert len(blob) == 3 + width * (900 - 3 + 1)
    assert decode_histogram(blob) == histogram


_COUNTS = st.sampled_from([1, 2, 255, 256, 2**16 - 1, 2**16, 2**32 - 1, 2**32, 2**48])


@settings(max_examples=200, deadline=None)
@given(
    histograms=st.lists(
        st.lists(st.tuples(st.integers(0, 700), _COUNTS), min_size=1, max_size=6), min_size=1, max_size=300
    ),
)
def test_stored_histograms_added_in_narrow_fields_rank_as_their_integer_sum(
    histograms: list[list[tuple[int, int]]],
) -> None:
    """A query adds stored histograms in fields only as wide as their sum needs (two bytes for a month of
    one-byte counts): the p50 and p95 fields are those of the 64-bit integer sum, whatever the counts' widths."""
    integers = [sum(count << (64 * field) for field, count in counts) for counts in histograms]
    fields = _stats._fields_of(sum(integers))
    assert fields is not None
    blobs = [encode_histogram(histogram) for histogram in integers]
    assert _stats._added_percentile_fields(blobs) == _stats._percentile_fields(*fields)


def test_a_histogram_takes_counts_back_to_zero() -> None:
    """Taking back what was added leaves an empty histogram (the place's row is then deleted)."""
    added = _histogram([5.0, 5.0, 700.0]).histogram
    removed = _histogram([5.0, 700.0]).histogram
    left = decode_histogram(encode_histogram(added)) - removed
    assert left == _histogram([5.0]).histogram
    assert left - _histogram([5.0]).histogram == 0


_FIRST_LAYOUT = """
CREATE TABLE stats_rollup_first (
    dim TEXT NOT NULL, grain TEXT NOT NULL, bucket TEXT NOT NULL, key TEXT NOT NULL, project TEXT NOT NULL,
    status TEXT NOT NULL,
    runs INTEGER NOT NULL,
    cost_nanos INTEGER NOT NULL, costs INTEGER NOT NULL, cost_min_nanos INTEGER, cost_max_nanos INTEGER,
    duration_us INTEGER NOT NULL, durations INTEGER NOT NULL, duration_ms_min REAL, duration_ms_max REAL,
    PRIMARY KEY (dim, grain, bucket, key, project, status)
) WITHOUT ROWID;
CREATE TABLE stats_bins (
    dim TEXT NOT NULL, grain TEXT NOT NULL, bucket TEXT NOT NULL, key TEXT NOT NULL, project TEXT NOT NULL,
    bin INTEGER NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (dim, grain, bucket, key, project, bin)
) WITHOUT ROWID;
"""
"""The statistics tables as the release before this one made them: hour and day rows per project, a row per bin."""
_HOUR_NS = 3600 * 10**9


def _to_first_layout(conn: sqlite3.Connection) -> None:
    """Rewrite the statistics into the first layout, from this layout's hour and day rows of single projects."""
    conn.executescript(_FIRST_LAYOUT)
    conn.execute(
        "INSERT INTO stats_rollup_first SELECT dim, grain, bucket, key, project, status, runs, cost_nanos, costs, "
        "cost_min_nanos, cost_max_nanos, duration_us, durations, duration_ms_min, duration_ms_max FROM stats_rollup "
        "WHERE grain IN ('h', 'd') AND project != '*'"
    )
    bins: list[tuple[Any, ...]] = []
    for dim, grain, project, bucket, key, blob in conn.execute(
        "SELECT dim, grain, project, bucket, key, hist FROM stats_hist WHERE grain IN ('h', 'd') AND project != '*'"
    ).fetchall():
        histogram, field = decode_histogram(blob), 0
        while histogram:
            count = histogram & (2**64 - 1)
            if count:
                b = -(10**6) if field == 0 else field - 1 + _stats._MIN_BIN
                bins.append((dim, grain, bucket, key, project, b, count))
            histogram >>= 64
            field += 1
    conn.executemany("INSERT INTO stats_bins VALUES (?, ?, ?, ?, ?, ?, ?)", bins)
    conn.execute("DROP TABLE stats_rollup")
    conn.execute("DROP TABLE stats_hist")
    conn.execute("ALTER TABLE stats_rollup_first RENAME TO stats_rollup")
    store_entry_bytes(conn)
    run_counts_as_before(conn)
    conn.execute(f"PRAGMA user_version = {MIGRATIONS.index(_stats_for_all_projects_and_by_month)}")


_QUERIES = [
    StatsQuery(by=by, bucket=bucket, project=project)
    for by in StatsBy
    for bucket in (None, Bucket.DAY)
    for project in (None, "p1")
]


async def _answers(path: Path, runs: list[RunEvents] | None = None) -> list[list[dict[str, Any]]]:
    store = SqliteStore(path, readers=1)
    await store.open()
    try:
        for project in ("p1", "p2"):
            mine = [e for run in runs or [] if run.project == project for e in run.events]
            if mine:
                await store.append(prepared(mine, project=project))
        if runs:
            await store.purge(PurgeSelection(run_ids=(runs[0].run_id,), by="cli"))
        return [await store.run_stats(query) for query in _QUERIES]
    finally:
        await store.close()


def test_statistics_of_the_first_layout_are_upgraded_to_the_same_answers(tmp_path: Path) -> None:
    """A database whose statistics are in the first layout (a purged run counted in them too) answers every
    query the same after the migration: hour rows make the day, month and all-project rows, bins the blobs."""
    runs = []
    for i in range(40):
        run = RunEvents(workflow_id=f"w{i % 3}", project=("p1", "p2")[i % 2])
        run.clock_ns = 1_788_000_000 * 10**9 + i * 19 * _HOUR_NS  # over a month and more: August to September
        run.start(agent_id=f"bot-{i % 4}")
        run.node("fetch", status="failed" if i % 5 == 0 else "succeeded")
        run.finish("failed" if i % 5 == 0 else "succeeded")
        run.events[-1]["data"]["duration_ms"] = [0.0, 3.5, 250.0, 1e6][i % 4] + i
        runs.append(run)
    path = tmp_path / "stats.db"
    before = asyncio.run(_answers(path, runs))
    assert any(group["series"] for answer in before for group in answer if "series" in group)
    with sqlite3.connect(path, isolation_level=None) as conn:
        _to_first_layout(conn)
    assert asyncio.run(_answers(path)) == before
    with sqlite3.connect(path) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'stats%'")}
    assert tables == {"stats_rollup", "stats_hist", "stats_total"}


async def _stats_over(path: Path, queries: list[StatsQuery]) -> list[list[dict[str, Any]]]:
    store = SqliteStore(path, readers=1)
    await store.open()
    try:
        run = RunEvents(workflow_id="w", project="p1")
        run.start()
        run.finish("succeeded")
        await store.append(prepared(run.events, project="p1"))
        return [await store.run_stats(query) for query in queries]
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("early", "later"),
    [
        (
            format_datetime(datetime(142, 3, 15, 4, 28, 18, 590000, tzinfo=UTC)),
            format_datetime(datetime(673, 5, 16, 5, 55, 30, 300000, tzinfo=UTC)),
        ),
        # as earlier receivers wrote them, unpadded (a one-digit year's "-06-" puts a dash where a year ends)
        ("142-03-15T04:28:18.590000Z", "1-06-10T00:00:00.000000Z"),
    ],
)
def test_a_range_bound_before_the_year_1000_is_before_every_run(tmp_path: Path, early: str, later: str) -> None:
    """A bound before the year 1000 answers, as a bound before every run: since it, every run counts; until it,
    none. Written with four year digits, or unpadded as earlier receivers wrote it."""
    queries = [StatsQuery(since=early, until=later, bucket=bucket) for bucket in (None, Bucket.HOUR, Bucket.DAY)] + [
        StatsQuery(since=early),
        StatsQuery(until=later),
        StatsQuery(),
    ]
    *empty, since_early, until_later, everything = asyncio.run(_stats_over(tmp_path / "stats.db", queries))
    assert empty == [[], [], []]
    assert until_later == []
    assert since_early == everything
    assert everything[0]["runs"] == 1


def test_a_range_bound_in_the_last_day_there_is_answers(tmp_path: Path) -> None:
    """A bound within 31 December 9999 (no day or month after it) answers: no run is that late."""
    late = "9999-12-31T05:00:00.000000Z"
    queries = [StatsQuery(since=late, bucket=bucket) for bucket in (None, Bucket.HOUR, Bucket.DAY)]
    queries.append(StatsQuery(until=late))
    *after, until_late = asyncio.run(_stats_over(tmp_path / "stats.db", queries))
    assert after == [[], [], []]
    assert until_late[0]["runs"] == 1


@pytest.mark.parametrize(
    ("query", "sorts"),
    [
        (StatsQuery(by=StatsBy.NODE), 1),
        (StatsQuery(since="2026-11-26T17:00:00.000000Z", bucket=Bucket.HOUR), 0),
        (StatsQuery(by=StatsBy.NODE, since="2026-11-03T17:00:00.000000Z", bucket=Bucket.DAY), 1),
        (StatsQuery(since="2026-11-03T00:00:00.000000Z", until="2026-12-02T00:00:00.000000Z", bucket=Bucket.DAY), 0),
        (StatsQuery(by=StatsBy.AGENT, since="2026-11-13T12:00:00.000000Z", until="2026-12-01T07:00:00.000000Z"), 1),
        (StatsQuery(since="2026-11-03T17:00:00.000000Z", bucket=Bucket.DAY, project="p1"), 1),
    ],
)
def test_each_query_searches_the_primary_keys_and_sorts_only_edge_hours(
    tmp_path: Path, query: StatsQuery, sorts: int
) -> None:
    """Every range a query reads is a search of its table's primary key (which holds every column: no lookups);
    a series reads its whole buckets as their places' totals, so only the hours at its edges (or a query without
    buckets, its few rows per group) go through a temporary B-tree."""
    asyncio.run(_stats_over(tmp_path / "stats.db", []))
    figures, hists = _stats.stats_reads(query, kept=True)  # the reads the store makes
    with sqlite3.connect(tmp_path / "stats.db") as conn:
        for (sql, params), table in (
            (figures, "stats_rollup"),
            (hists, "stats_hist"),
        ):
            steps = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            tables = (table, "stats_total") if table == "stats_rollup" else (table,)
            reads = [step for step in steps if any(name in step for name in tables)]
            assert reads, steps
            searched = tuple(f"SEARCH {name} USING PRIMARY KEY (dim=? AND grain=? AND project=?" for name in tables)
            assert all(step.startswith(searched) for step in reads), steps
            assert sum("TEMP B-TREE" in step for step in steps) == (sorts if table == "stats_rollup" else 0), steps


_ALL_QUERIES = [
    StatsQuery(by=by, bucket=bucket, project=project)
    for by in StatsBy
    for bucket in (None, Bucket.HOUR, Bucket.DAY)
    for project in (None, "p1")
]


def _stored_percentiles_are_computed_ones(path: Path) -> int:
    """Every stored histogram's p50 and p95 fields are those a read would find from its counts, and every place's
    totals what a GROUP BY over its rows gives; how many histograms there are."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT hist, p50_field, p95_field FROM stats_hist").fetchall()
        totals = conn.execute("SELECT * FROM stats_total ORDER BY dim, grain, project, bucket, key").fetchall()
        added = conn.execute(
            f"SELECT dim, grain, project, bucket, key, {_stats._FIGURES_SQL}, {_stats._STATUS_SUMS_SQL} "
            "FROM stats_rollup WHERE grain IN ('h', 'd') GROUP BY dim, grain, project, bucket, key "
            "ORDER BY dim, grain, project, bucket, key"
        ).fetchall()
    for blob, p50, p95 in rows:
        assert (p50, p95) == _stats._added_percentile_fields([blob])
    assert totals == added
    assert totals
    return len(rows)


async def _late_and_purged(path: Path) -> list[list[dict[str, Any]]]:
    """Runs over days and hours in two projects; late earlier run_finished events move some to another status and
    duration (taken out of their histograms, added to others); a purge, then a rebuild (every stored run taken
    out and folded back in). The stored percentiles are checked after each step."""
    store = SqliteStore(path, readers=1)
    await store.open()
    try:
        runs = []
        for i in range(36):
            run = RunEvents(workflow_id=f"w{i % 3}", project=("p1", "p2")[i % 2])
            run.clock_ns = 1_788_000_000 * 10**9 + i * 7 * _HOUR_NS
            run.start(agent_id=f"bot-{i % 4}")
            run.node("fetch", status="failed" if i % 5 == 0 else "succeeded")
            run.finish("succeeded")
            run.events[-1]["data"]["duration_ms"] = [0.0, 3.5, 250.0, 1e6, 17.0][i % 5] * (1 + i / 10)
            runs.append(run)
            await store.append(prepared(run.events, project=run.project))
        assert _stored_percentiles_are_computed_ones(path) > 0
        moved = [run for i, run in enumerate(runs) if i % 4 == 1 and i % 5]  # project p2, durations above 0
        for run in moved:  # each finished earlier by its own clock: it wins, whatever it arrives after
            finish = run.events[-1]
            earlier = {**finish, "event_id": finish["event_id"][:-4] + "0000", "seq": 50, "producer_seq": 500}
            earlier["data"] = {**finish["data"], "status": "failed", "duration_ms": finish["data"]["duration_ms"] / 2,
                               "error": {"type": "E", "message": "m", "node_id": None}}  # fmt: skip
            await store.append(prepared([earlier], project=run.project))
        [group] = await store.run_stats(StatsQuery(by=StatsBy.PROJECT, project="p2"))
        assert group["by_status"]["failed"] == len(moved) == 7
        _stored_percentiles_are_computed_ones(path)
        await store.purge(PurgeSelection(run_ids=tuple(r.run_id for r in runs[:10]), by="cli"))
        _stored_percentiles_are_computed_ones(path)
        await store.rebuild()
        _stored_percentiles_are_computed_ones(path)
        return [await store.run_stats(query) for query in _ALL_QUERIES]
    finally:
        await store.close()


async def _answers_to_all(path: Path) -> list[list[dict[str, Any]]]:
    store = SqliteStore(path, readers=1)
    await store.open()
    try:
        return [await store.run_stats(query) for query in _ALL_QUERIES]
    finally:
        await store.close()


def test_stored_percentiles_and_totals_are_the_computed_ones_after_late_events_purges_rebuilds_and_migration(
    tmp_path: Path,
) -> None:
    """Each histogram's p50 and p95 fields, stored beside it, are the ones its counts give, and each place's
    totals the sums of its rows, after late finishes move runs (a row emptied), purges and a rebuild; a database
    made before them gets them filled by the migrations; and every answer is the same read from the stored fields
    as computed from the histograms (fields cleared)."""
    path = tmp_path / "stats.db"
    answers = asyncio.run(_late_and_purged(path))
    assert any(group.get("series") for answer in answers for group in answer)
    with sqlite3.connect(path, isolation_level=None) as conn:  # the fields cleared: computed at read time
        conn.execute("UPDATE stats_hist SET p50_field = NULL, p95_field = NULL")
    assert asyncio.run(_answers_to_all(path)) == answers
    with sqlite3.connect(path, isolation_level=None) as conn:  # back to the schema before the migrations
        conn.execute("DROP TABLE stats_total")
        conn.execute("ALTER TABLE stats_hist DROP COLUMN p50_field")
        conn.execute("ALTER TABLE stats_hist DROP COLUMN p95_field")
        conn.execute(f"PRAGMA user_version = {MIGRATIONS.index(_percentiles_stored_beside_histograms)}")
    assert asyncio.run(_answers_to_all(path)) == answers
    assert _stored_percentiles_are_computed_ones(path) > 0
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM stats_hist WHERE p50_field IS NULL").fetchone() == (0,)
