"""``GET /api/stats`` at a million runs: time per query from the rollups, next to raw sqlite3 over the runs.

    python benchmarks/stats.py [--runs 1000000] [--db PATH] [--repeat 20] [--no-reference]

Fills a database with N finished and running runs (rows written straight
into the ``runs`` projection, 20 workflows, 50 agents, 5 projects, three
seconds apart: about 35 days at a million) and one node attempt per finished
run (5 nodes), then builds the statistics rollups from them with the same
code the migration uses (``backfill_rollups``). ``--db`` keeps the file and
reuses it when it is already filled.

Then times each statistics query through the store (``SqliteStore.run_stats``,
what ``GET /api/stats`` calls): by workflow, agent, project and node over all
time, the last 7 days in hour buckets, the last 30 days in day buckets, a
range cut mid-day at both ends, and two with a project filter (an API key's
scope). Beside each: the raw sqlite3 reference, a
``GROUP BY`` over the ``runs`` rows of the same range (counts by status, cost
sum/min/max, average duration: no percentiles, which it cannot give without
sorting), as a receiver without rollups would answer. Prints the median and
p95 of ``--repeat`` calls, the median CPU time of a call (both threads: it
moves less than wall time with the load other work puts on the machine) and
the ratio of the reference to the rollup query (``--no-reference`` leaves the
reference out: it takes seconds per query, most of a run's time).
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.receiver._many_runs import fill_runs  # noqa: E402

from flowledger._wire import format_ts  # noqa: E402
from flowledger.receiver.store._rollups import backfill_rollups  # noqa: E402
from flowledger.receiver.store._sqlite import SqliteStore  # noqa: E402
from flowledger.receiver.store._stats import Bucket, StatsBy, StatsQuery  # noqa: E402

TARGET_P95_MS = 100.0
_DAY_NS = 86_400 * 10**9


def _filled(path: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(conn.execute("SELECT count(*) FROM stats_rollup").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def _fill(path: Path, runs: int) -> None:
    started = time.perf_counter()
    fill_runs(path, runs)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    conn.execute(
        "UPDATE runs SET agent_id = 'agent-' || (abs(random()) % 50), project = 'project-' || (abs(random()) % 5)"
    )
    conn.execute(
        "INSERT INTO node_runs (run_id, span_id, node_id, attempt, status, started_at, completed_at, duration_ms, "
        "cost_usd) SELECT run_id, lower(hex(randomblob(8))), 'node_' || (abs(random()) % 5), 1, "
        "CASE WHEN abs(random()) % 20 = 0 THEN 'failed' ELSE 'succeeded' END, started_at, completed_at, "
        "duration_ms / 3, cost_usd / 2 FROM runs WHERE status NOT IN ('running', 'stuck')"
    )
    backfill_rollups(conn)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()
    print(f"filled {runs:,} runs and their rollups in {time.perf_counter() - started:.0f} s", flush=True)


_COLUMN = {StatsBy.WORKFLOW: "workflow_id", StatsBy.AGENT: "agent_id", StatsBy.PROJECT: "project"}


def _reference(conn: sqlite3.Connection, query: StatsQuery) -> int:
    """The same question asked of the runs rows themselves (nodes: of node_runs joined to their runs)."""
    clauses = ["r.status NOT IN ('running', 'stuck')"]
    params: list[Any] = []
    if query.since is not None:
        clauses.append("r.started_at >= ?")
        params.append(query.since)
    if query.until is not None:
        clauses.append("r.started_at < ?")
        params.append(query.until)
    if query.project is not None:
        clauses.append("r.project = ?")
        params.append(query.project)
    bucket = {None: "''", Bucket.HOUR: "substr(t.started_at, 1, 13)", Bucket.DAY: "substr(t.started_at, 1, 10)"}
    if query.by is StatsBy.NODE:
        source = "node_runs t JOIN runs r ON r.run_id = t.run_id"
        key = "r.workflow_id || '/' || t.node_id"
    else:
        source = "runs r"
        key = f"r.{_COLUMN[query.by]}"
    table = "t" if query.by is StatsBy.NODE else "r"
    sql = (
        f"SELECT {key}, {bucket[query.bucket].replace('t.', table + '.')}, {table}.status, count(*), "
        f"sum({table}.cost_usd), min({table}.cost_usd), max({table}.cost_usd), avg({table}.duration_ms) "
        f"FROM {source} WHERE {' AND '.join(clauses)} GROUP BY 1, 2, 3"
    )
    return len(conn.execute(sql, params).fetchall())


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(0.95 * len(ordered)) - 1)]


async def _measure(path: Path, repeat: int, *, reference: bool = True) -> None:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    last = conn.execute("SELECT max(started_at) FROM runs").fetchone()[0]
    now_ns = int(time.mktime(time.strptime(last[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone) * 10**9
    week, month = format_ts(now_ns - 7 * _DAY_NS), format_ts(now_ns - 30 * _DAY_NS)
    mid_start = format_ts(now_ns - 20 * _DAY_NS - 5 * 3600 * 10**9)
    mid_end = format_ts(now_ns - 2 * _DAY_NS + 7 * 3600 * 10**9)
    cases = [
        *[(f"by {by.value}, all time", StatsQuery(by=by)) for by in StatsBy],
        ("by workflow, 7 days, hour buckets", StatsQuery(since=week, bucket=Bucket.HOUR)),
        ("by workflow, 30 days, day buckets", StatsQuery(since=month, bucket=Bucket.DAY)),
        ("by agent, 18 days cut mid-day", StatsQuery(by=StatsBy.AGENT, since=mid_start, until=mid_end)),
        ("by node, 30 days, day buckets", StatsQuery(by=StatsBy.NODE, since=month, bucket=Bucket.DAY)),
        ("by agent, one project, 30 days, days", StatsQuery(by=StatsBy.AGENT, since=month, bucket=Bucket.DAY,
                                                           project="project-1")),
        ("by workflow, one project, 7 days, hours", StatsQuery(since=week, bucket=Bucket.HOUR, project="project-1")),
    ]  # fmt: skip
    store = SqliteStore(path, readers=1, readonly=True)
    await store.open()
    worst = 0.0
    print(
        f"{'query':40} {'rollup p50':>11} {'rollup p95':>11} {'cpu p50':>8} {'raw p50':>9} {'raw p95':>9} "
        f"{'raw/rollup':>10}"
    )
    try:
        for name, query in cases:
            ours: list[float] = []
            cpu: list[float] = []
            groups = 0
            for _ in range(repeat):
                c0, t0 = time.process_time(), time.perf_counter()
                groups = len(await store.run_stats(query))
                ours.append((time.perf_counter() - t0) * 1000)
                cpu.append((time.process_time() - c0) * 1000)
            raw: list[float] = []
            for _ in range(max(3, repeat // 5) if reference else 0):
                t0 = time.perf_counter()
                _reference(conn, query)
                raw.append((time.perf_counter() - t0) * 1000)
            p95 = _p95(ours)
            worst = max(worst, p95)
            versus = (
                f"{statistics.median(raw):7.0f}ms {_p95(raw):7.0f}ms "
                f"{statistics.median(raw) / statistics.median(ours):9.0f}x"
                if raw
                else f"{'-':>9} {'-':>9} {'-':>10}"
            )
            print(
                f"{name:40} {statistics.median(ours):9.1f}ms {p95:9.1f}ms {statistics.median(cpu):6.1f}ms "
                f"{versus}  ({groups} groups)",
                flush=True,
            )
    finally:
        await store.close()
        conn.close()
    verdict = "under" if worst < TARGET_P95_MS else "OVER"
    print(f"slowest p95 {worst:.1f} ms: {verdict} the {TARGET_P95_MS:.0f} ms target")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--no-reference", action="store_true", help="leave out the raw sqlite3 reference")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = args.db or Path(folder) / "stats.db"
        if not _filled(path):
            _fill(path, args.runs)
        asyncio.run(_measure(path, args.repeat, reference=not args.no_reference))


if __name__ == "__main__":
    main()
