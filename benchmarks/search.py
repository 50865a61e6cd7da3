"""``GET /api/runs?q=`` over N runs: p50 and p95 per search, next to the bare FTS5 lookup in raw sqlite3.

    python benchmarks/search.py [--runs 1000000] [--db PATH] [--repeat 21]

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
"""

from __future__ import annotations

import argparse
import asyncio
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
from flowledger.receiver.store._protocol import RunQuery  # noqa: E402
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
    trigger = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'search_text_indexed'").fetchone()[0]
    conn.execute("BEGIN")
    conn.execute("DROP TRIGGER search_text_indexed")
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
    conn.execute("INSERT INTO search_fts (search_fts) VALUES ('rebuild')")
    conn.execute(trigger)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, default=None, help="keep the filled database here (reused when filled)")
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = args.db or Path(folder) / "search.db"
        if _filled(path) != args.runs:
            path.unlink(missing_ok=True)
            began = time.perf_counter()
            fill_runs(path, args.runs)
            fill_texts(path)
            print(f"wrote and indexed {args.runs:,} runs in {time.perf_counter() - began:.0f} s", file=sys.stderr)
        with TestClient(create_app(ReceiverConfig(db_path=path, sweep_interval_s=0))) as client:
            ok = asyncio.run(bench(path, args.runs, args.repeat, client))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
