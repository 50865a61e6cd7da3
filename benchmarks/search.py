"""``GET /api/runs?q=`` over N runs: p50 and p95 per search, next to the bare FTS5 lookup in raw sqlite3.

    python benchmarks/search.py [--runs 1000000] [--db PATH] [--repeat 21] [--engine sqlite|postgres]

Fills a database with N runs (rows written straight into the projection, as
in ``query_runs.py``) and, per run, the text the projector would index: a
payload (a customer, an order note) and, for every failed run, its error,
and for one run in ten a log line. Words are drawn so that some are rare (a
customer name: a few runs each), some common (one run in a hundred) and one
is in every run. Then times a page of 50 runs for each search:

* ``store``: ``SqliteStore.list_runs`` with ``search=`` (the page and its
  capped total), and ``HTTP``: the whole ``GET /api/runs?q=`` through the
  ASGI app (Starlette's test client, no socket);
* ``raw fts``: bare sqlite3 ``SELECT rowid FROM search_fts WHERE search_fts
  MATCH ? ORDER BY rowid DESC LIMIT 50``, the floor any search sits on.

Prints medians and 95th percentiles of ``--repeat`` runs and the ratio of
the store's p95 to the raw lookup's; the target is a p95 under 200 ms at a
million runs.

With ``--engine postgres`` the same runs and texts are also copied into a new
PostgreSQL database (its ``tsvector`` rows made as the projector makes them;
a throwaway cluster of the machine's binaries without ``--postgres-url``),
and ``PostgresStore.list_runs`` is timed beside the SQLite store in the same
run, with the ratio of their p95s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

from starlette.testclient import TestClient

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.receiver._many_runs import fill_runs  # noqa: E402

from flowledger._wire import RunStatus  # noqa: E402
from flowledger.receiver._app import create_app  # noqa: E402
from flowledger.receiver._config import ReceiverConfig  # noqa: E402
from flowledger.receiver.store._protocol import RunQuery, Store  # noqa: E402
from flowledger.receiver.store._search import fts_query  # noqa: E402
from flowledger.receiver.store._sqlite import SqliteStore  # noqa: E402

PAGE: Final = 50
TARGET_P95_MS: Final = 200.0
_CHUNK: Final = 50_000
_NOTES: Final = ("urgent", "gift", "fragile", "express", "backorder", "wholesale", "return", "priority")
_ERRORS: Final = (
    "TimeoutError: upstream pricing service timed out after 10 s",
    "ValueError: no stock for sku",
    "ConnectionError: payment gateway refused the connection",
    "KeyError: missing field address",
)
_LOG_LINES: Final = ("retrying request", "cache miss for catalogue", "slow answer from warehouse api")
_SEARCHES: Final = (
    ("rare word (a customer)", "customer0004217", ()),
    ("common word (1 run in 8)", "fragile", ()),
    ("in every run", "order", ()),
    ("two words", "pricing timed", ()),
    ("prefix (wareho*)", "wareho*", ()),
    ("word + failed", "gateway", (RunStatus.FAILED,)),
    ("no match", "zzyzx", ()),
)


def _filled(path: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(conn.execute("SELECT count(*) FROM search_text").fetchone()[0] and
                       conn.execute("SELECT count(*) FROM runs").fetchone()[0])  # fmt: skip
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def fill_texts(path: Path) -> None:
    """Index each run's payload, error and log line as the projector would (bulk: the FTS index built once)."""
    conn = sqlite3.connect(path, isolation_level=None)
    rng = random.Random(11)
    conn.execute("BEGIN")
    rows: list[tuple[str, str, str]] = []
    sql = "INSERT INTO search_text (run_id, source, text) VALUES (?, ?, ?)"
    for run_id, status in conn.execute("SELECT run_id, status FROM runs ORDER BY started_at").fetchall():
        customer = f"customer{rng.randrange(250_000):07d}"
        rows.append((run_id, "payload", f'{{"order":{rng.randrange(10**6)},"customer":"{customer}",'
                                         f'"note":"{rng.choice(_NOTES)}"}}'))  # fmt: skip
        if status == RunStatus.FAILED.value:
            rows.append((run_id, "error", rng.choice(_ERRORS)))
        if rng.random() < 0.1:
            rows.append((run_id, "log:sdk", rng.choice(_LOG_LINES)))
        if len(rows) >= _CHUNK:
            conn.executemany(sql, rows)
            rows.clear()
    conn.executemany(sql, rows)
    conn.execute("INSERT INTO search_fts (search_fts) VALUES ('rebuild')")  # the store indexes per write
    conn.execute("COMMIT")
    conn.close()


def _percentiles(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000


def _times(work: Callable[[], Any], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        began = time.perf_counter()
        work()
        out.append(time.perf_counter() - began)
    return out


async def _atimes(work: Callable[[], Awaitable[Any]], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        began = time.perf_counter()
        await work()
        out.append(time.perf_counter() - began)
    return out


async def bench(path: Path, count: int, repeat: int, client: TestClient) -> bool:
    raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    store = SqliteStore(path, readonly=True)
    await store.open()
    texts = int(raw.execute("SELECT count(*) FROM search_text").fetchone()[0])
    print(f"{count:,} runs, {texts:,} indexed texts; a page of {PAGE}; {repeat} repeats; p50 / p95 in ms")
    print(f"{'search':<26} {'runs':>7} {'store':>15} {'HTTP':>15} {'raw fts':>15} {'p95 ratio':>9}")
    worst = 0.0
    raw_sql = f"SELECT rowid FROM search_fts WHERE search_fts MATCH ? ORDER BY rowid DESC LIMIT {PAGE}"
    try:
        for label, text, statuses in _SEARCHES:
            query = RunQuery(search=text, statuses=statuses, limit=PAGE)
            page = await store.list_runs(query)
            store_p50, store_p95 = _percentiles(await _atimes(lambda q=query: store.list_runs(q), repeat))  # type: ignore[misc]
            params: list[tuple[str, Any]] = [("q", text), ("limit", PAGE), *(("status", s.value) for s in statuses)]
            http_p50, http_p95 = _percentiles(
                _times(lambda p=params: client.get("/api/runs", params=p).raise_for_status(), repeat)  # type: ignore[misc]
            )
            match = fts_query(text)
            raw_p50, raw_p95 = _percentiles(_times(lambda m=match: raw.execute(raw_sql, (m,)).fetchall(), repeat))  # type: ignore[misc]
            worst = max(worst, store_p95, http_p95)
            total = f"{page.total:,}{'+' if page.total_capped else ''}"
            print(
                f"{label:<26} {total:>7} {store_p50:>6.1f} / {store_p95:>6.1f} {http_p50:>6.1f} / {http_p95:>6.1f} "
                f"{raw_p50:>6.2f} / {raw_p95:>6.2f} {store_p95 / max(raw_p95, 1e-6):>8.0f}x"
            )
    finally:
        await store.close()
        raw.close()
    verdict = "meets" if worst < TARGET_P95_MS else "misses"
    print(f"slowest p95 {worst:.1f} ms: {verdict} the {TARGET_P95_MS:.0f} ms target")
    return worst < TARGET_P95_MS


async def _to_postgres(path: Path, url: str) -> None:
    """Copy the runs and the texts of the SQLite file into the (migrated) PostgreSQL database at ``url``."""
    import asyncpg

    from flowledger.receiver.store._fold import RUN_COLUMNS
    from flowledger.receiver.store.postgres import PostgresStore
    from flowledger.receiver.store.postgres._search import save_pg_texts

    store = PostgresStore(url)
    await store.open()  # made and migrated
    await store.close()
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    conn = await asyncpg.connect(url)
    try:
        cursor = source.execute(f"SELECT {', '.join(RUN_COLUMNS)} FROM runs")
        while rows := cursor.fetchmany(_CHUNK):
            booleans = [i for i, c in enumerate(RUN_COLUMNS) if c == "dry_run"]
            records = [tuple(bool(v) if i in booleans and v is not None else v for i, v in enumerate(r)) for r in rows]
            await conn.copy_records_to_table("runs", records=records, columns=list(RUN_COLUMNS))
        cursor = source.execute("SELECT run_id, NULL, source, text FROM search_text ORDER BY id")
        while rows := cursor.fetchmany(_CHUNK):
            await save_pg_texts(conn, [tuple(r) for r in rows])
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
        source.close()


async def bench_engines(sqlite_path: Path, url: str, count: int, repeat: int) -> None:
    """list_runs with each search on both engines, the same data, in one run."""
    from flowledger.receiver.store.postgres import PostgresStore

    stores: dict[str, Store] = {
        "sqlite": SqliteStore(sqlite_path, readonly=True),
        "postgres": PostgresStore(url, readonly=True),
    }
    for store in stores.values():
        await store.open()
    print(f"{count:,} runs on each engine; a page of {PAGE}; {repeat} repeats; p50 / p95 in ms")
    print(f"{'search':<26} {'runs':>7} {'SQLite store':>15} {'PostgreSQL store':>17} {'p95 ratio':>9}")
    try:
        for label, text, statuses in _SEARCHES:
            query = RunQuery(search=text, statuses=statuses, limit=PAGE)
            pages = {name: await store.list_runs(query) for name, store in stores.items()}
            if [r["run_id"] for r in pages["sqlite"].runs] != [r["run_id"] for r in pages["postgres"].runs]:
                print(f"{label}: the engines answered different runs", file=sys.stderr)
            figures = {
                name: _percentiles(await _atimes(lambda s=store, q=query: s.list_runs(q), repeat))  # type: ignore[misc]
                for name, store in stores.items()
            }
            page = pages["postgres"]
            total = f"{page.total:,}{'+' if page.total_capped else ''}"
            (s50, s95), (p50, p95) = figures["sqlite"], figures["postgres"]
            print(f"{label:<26} {total:>7} {s50:>6.1f} / {s95:>6.1f} {p50:>8.1f} / {p95:>6.1f} {p95 / s95:>8.1f}x")
    finally:
        for store in stores.values():
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, default=None, help="keep the filled database here (reused when filled)")
    parser.add_argument("--repeat", type=int, default=21)
    parser.add_argument("--engine", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--postgres-url", default=None, help="a PostgreSQL server to create the database on")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as stack:
        path = args.db or Path(folder) / "search.db"
        if _filled(path) != args.runs:
            path.unlink(missing_ok=True)
            began = time.perf_counter()
            fill_runs(path, args.runs)
            fill_texts(path)
            print(f"wrote and indexed {args.runs:,} runs in {time.perf_counter() - began:.0f} s", file=sys.stderr)
        if args.engine == "postgres":
            sys.path.insert(0, str(ROOT / "benchmarks"))
            from ingest import fresh_postgres_database
            from tests._postgres import postgres_cluster

            server = args.postgres_url or stack.enter_context(postgres_cluster())
            url = fresh_postgres_database(server)
            began = time.perf_counter()
            asyncio.run(_to_postgres(path, url))
            print(f"copied into PostgreSQL in {time.perf_counter() - began:.0f} s", file=sys.stderr)
            asyncio.run(bench_engines(path, url, args.runs, args.repeat))
            return
        with TestClient(create_app(ReceiverConfig(db_path=path, sweep_interval_s=0))) as client:
            ok = asyncio.run(bench(path, args.runs, args.repeat, client))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
