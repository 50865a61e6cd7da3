"""``GET /api/runs`` filtered by run context: time per page over N runs, next to raw sqlite3 with and without the index.

    python benchmarks/query_context.py [--runs 1000000] [--db PATH] [--repeat 7]

Fills a database with N runs (the query benchmark's filler, then a run
context for each: 1,000 users, 50 agents, 5 projects, 20 intents, and one
run in ten started by the run before it), and times one page of 50 runs,
newest first, at the first page and deep in the listing (a cursor), for a
filter on each context field, two together, and one with a time range:

* ``store``: the store's ``list_runs`` (what ``GET /api/runs`` does, the
  capped total included);
* ``raw``: the bare keyset ``SELECT`` in sqlite3 on the same file, the
  floor any engine code sits on (the ratio is store / raw);
* ``no index``: the same bare query kept off the filter's index
  (``+r.agent_id = ?``): the newest-first walk that checks each run, what
  the filter would cost without its index.

Also a run's detail with its children (``get_run``). Prints medians of
``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.receiver._many_runs import fill_runs  # noqa: E402

from flowledger.receiver.store._migrations import migrate  # noqa: E402
from flowledger.receiver.store._protocol import RunQuery  # noqa: E402
from flowledger.receiver.store._run_filter import CONTEXT_COLUMNS, RunContextFilter  # noqa: E402
from flowledger.receiver.store._sqlite import SqliteStore  # noqa: E402
from flowledger.receiver.store._views import RunPageCursor  # noqa: E402

PAGE = 50
_CONTEXT_SQL = "UPDATE runs SET user_id = ?, agent_id = ?, project = ?, intent = ?, parent_run_id = ? WHERE run_id = ?"


def _filled(path: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(conn.execute("SELECT count(*) FROM runs WHERE agent_id IS NOT NULL").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def _fill(path: Path, count: int) -> None:
    fill_runs(path, count)
    conn = sqlite3.connect(path, isolation_level=None)
    ids = [row[0] for row in conn.execute("SELECT run_id FROM runs ORDER BY started_at, run_id")]
    rows = [
        (
            f"user-{i * 7919 % 1000}",
            f"agent-{i * 104729 % 50}",
            f"project-{(i // 7) % 5}",
            f"intent-{i * 31 % 20}",
            ids[i - 1] if i % 10 == 0 and i else None,
            run_id,
        )
        for i, run_id in enumerate(ids)
    ]
    conn.execute("BEGIN")
    conn.executemany(_CONTEXT_SQL, rows)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


def _median_ms(work: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


async def _amedian_ms(work: Callable[[], Awaitable[Any]], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        await work()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def _cursor_at(raw: sqlite3.Connection, depth: int, where: str, params: list[Any]) -> RunPageCursor | None:
    if depth == 0:
        return None
    row = raw.execute(
        f"SELECT started_at, run_id FROM runs r WHERE {where} ORDER BY started_at DESC, run_id DESC LIMIT 1 OFFSET ?",
        [*params, depth - 1],
    ).fetchone()
    return RunPageCursor(row[0], row[1])


async def bench(path: Path, count: int, repeat: int) -> None:
    raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    store = SqliteStore(path, readonly=True)
    await store.open()
    newest = raw.execute("SELECT max(started_at) FROM runs").fetchone()[0]
    day_before = raw.execute("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', ?, '-1 day')", [newest]).fetchone()[0]
    parent = raw.execute("SELECT parent_run_id FROM runs WHERE parent_run_id IS NOT NULL LIMIT 1").fetchone()[0]
    cases = [
        ("user_id", RunContextFilter(user_id="user-7")),
        ("agent_id", RunContextFilter(agent_id="agent-3")),
        ("project + agent_id", RunContextFilter(project="project-2", agent_id="agent-3")),
        ("intent, last day", RunContextFilter(intent="intent-4", since=day_before)),
        ("parent_run_id", RunContextFilter(parent_run_id=parent)),
    ]
    print(f"{count:,} runs; one page of {PAGE}; median of {repeat}; ratio: store / raw")
    print(f"{'filter':<20} {'matching':>9} {'depth':>8} {'store':>9} {'raw':>9} {'ratio':>6} {'no index':>10}")
    try:
        for label, context in cases:
            clauses, params = context.conditions("r.")
            where = " AND ".join(clauses)
            matching = int(raw.execute(f"SELECT count(*) FROM runs r WHERE {where}", params).fetchone()[0])
            for depth in sorted({0, max(0, matching // 2), max(0, matching - PAGE)}):
                cursor = _cursor_at(raw, depth, where, params)
                query = RunQuery(limit=PAGE, cursor=cursor, context=context)
                store_ms = await _amedian_ms(lambda q=query: store.list_runs(q), repeat)  # type: ignore[misc]
                after = " AND (r.started_at, r.run_id) < (?, ?)" if cursor else ""
                key = [cursor.started_at, cursor.run_id] if cursor else []
                order = "ORDER BY r.started_at DESC, r.run_id DESC LIMIT ?"
                raw_sql = f"SELECT * FROM runs r WHERE {where}{after} {order}"
                args = [*params, *key, PAGE]
                raw_ms = _median_ms(lambda s=raw_sql, a=args: raw.execute(s, a).fetchall(), repeat)  # type: ignore[misc]
                # "+r.col = ?" keeps the planner off the column's index: the newest-first walk, filtering rows
                scan_sql = raw_sql
                for column in CONTEXT_COLUMNS:
                    scan_sql = scan_sql.replace(f"r.{column} = ?", f"+r.{column} = ?")
                scan_ms = _median_ms(lambda s=scan_sql, a=args: raw.execute(s, a).fetchall(), 1)  # type: ignore[misc]
                print(
                    f"{label:<20} {matching:>9,} {depth:>8,} {store_ms:>7.2f}ms {raw_ms:>7.2f}ms "
                    f"{store_ms / raw_ms:>5.1f}x {scan_ms:>8.1f}ms"
                )
        detail_ms = await _amedian_ms(lambda: store.get_run(parent), repeat)
        print(f"get_run with its children (one child): {detail_ms:.2f} ms")
    finally:
        await store.close()
        raw.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, default=None, help="keep the filled database here (reused when filled)")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = args.db or Path(folder) / "runs.db"
        if _filled(path) != args.runs:
            path.unlink(missing_ok=True)
            began = time.perf_counter()
            _fill(path, args.runs)
            print(f"wrote {args.runs:,} runs in {time.perf_counter() - began:.0f} s", file=sys.stderr)
        else:
            conn = sqlite3.connect(path)
            migrate(conn)
            conn.close()
        asyncio.run(bench(path, args.runs, args.repeat))


if __name__ == "__main__":
    main()
