"""``GET /api/runs`` at depth: time per page over N runs, next to raw sqlite3.

    python benchmarks/query_runs.py [--runs 1000000] [--db PATH] [--repeat 7]

Fills a database with N runs (rows written straight into the projection, as
a receiver would have folded them; ``--db`` keeps the file and reuses it when
it is already filled), then times one page of 50 runs at several depths:

* ``cursor``: the store's ``list_runs`` following a ``next`` cursor (what
  ``GET /api/runs?cursor=`` does, total included), and the whole request
  through the ASGI app (Starlette's test client, no socket);
* ``raw keyset``: a bare sqlite3 ``SELECT ... WHERE (started_at, run_id) < (?, ?)
  ORDER BY ... LIMIT 50`` on the same file, the floor any engine code sits on;
* ``old``: what the route did before the cursor, ``count(*)`` of every
  matching row plus ``LIMIT 50 OFFSET d`` in raw sqlite3, for reference.

Also filtered pages: one workflow and one status, and two statuses. Prints
medians of ``--repeat`` runs and the ratio to the raw keyset query.
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

from starlette.testclient import TestClient

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.receiver._many_runs import fill_runs  # noqa: E402

from flowledger._wire import RunStatus  # noqa: E402
from flowledger.receiver._app import create_app  # noqa: E402
from flowledger.receiver._config import ReceiverConfig  # noqa: E402
from flowledger.receiver.store._migrations import migrate  # noqa: E402
from flowledger.receiver.store._protocol import RunQuery  # noqa: E402
from flowledger.receiver.store._sqlite import SqliteStore  # noqa: E402
from flowledger.receiver.store._views import RunPageCursor  # noqa: E402

PAGE = 50


def _filled(path: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


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


def _where(workflow: str | None, statuses: tuple[RunStatus, ...]) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if workflow is not None:
        clauses.append("workflow_id = ?")
        params.append(workflow)
    if statuses:
        clauses.append(f"status IN ({', '.join('?' * len(statuses))})")
        params += [s.value for s in statuses]
    return (" AND ".join(clauses) or "1"), params


def _cursor_at(raw: sqlite3.Connection, depth: int, where: str, params: list[Any]) -> RunPageCursor | None:
    """The cursor whose next page starts at row ``depth`` of the listing (None for the first page)."""
    if depth == 0:
        return None
    row = raw.execute(
        f"SELECT started_at, run_id FROM runs WHERE {where} ORDER BY started_at DESC, run_id DESC LIMIT 1 OFFSET ?",
        [*params, depth - 1],
    ).fetchone()
    return RunPageCursor(row[0], row[1])


def _raw_pages(
    raw: sqlite3.Connection, where: str, params: list[Any], cursor: RunPageCursor | None, depth: int, repeat: int
) -> tuple[float, float]:
    """Median ms of the raw keyset page, and of the old count(*) + OFFSET page, in bare sqlite3."""
    key_where = where + (" AND (started_at, run_id) < (?, ?)" if cursor else "")
    key_params = [*params, *((cursor.started_at, cursor.run_id) if cursor else ())]
    order = "ORDER BY started_at DESC, run_id DESC"
    keyset_sql = f"SELECT * FROM runs WHERE {key_where} {order} LIMIT ?"
    raw_ms = _median_ms(lambda: raw.execute(keyset_sql, [*key_params, PAGE]).fetchall(), repeat)

    def old() -> None:
        raw.execute(f"SELECT count(*) FROM runs WHERE {where}", params).fetchone()
        raw.execute(f"SELECT * FROM runs WHERE {where} {order} LIMIT ? OFFSET ?", [*params, PAGE, depth]).fetchall()

    return raw_ms, _median_ms(old, max(1, repeat // 3))


async def bench(path: Path, count: int, repeat: int, client: TestClient) -> None:
    raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    store = SqliteStore(path, readonly=True)
    await store.open()
    print(f"{count:,} runs; one page of {PAGE}; median of {repeat}; ratio of the store's page to the raw keyset query")
    print(f"{'listing':<20} {'depth':>9} {'cursor':>9} {'HTTP':>9} {'raw keyset':>11} {'ratio':>6} {'old':>9}")
    cases: list[tuple[str, str | None, tuple[RunStatus, ...], list[float]]] = [
        ("all runs", None, (), [0, 0.001, 0.1, 0.5, 1]),
        ("workflow-3, failed", "workflow-3", (RunStatus.FAILED,), [0, 0.5, 1]),
        ("failed + aborted", None, (RunStatus.FAILED, RunStatus.ABORTED), [0, 0.5, 1]),
    ]
    try:
        for label, workflow, statuses, fractions in cases:
            where, params = _where(workflow, statuses)
            matching = int(raw.execute(f"SELECT count(*) FROM runs WHERE {where}", params).fetchone()[0])
            for fraction in fractions:
                depth = max(0, min(int(matching * fraction), matching - PAGE))
                cursor = _cursor_at(raw, depth, where, params)
                query = RunQuery(workflow_id=workflow, statuses=statuses, limit=PAGE, cursor=cursor)
                store_ms = await _amedian_ms(lambda q=query: store.list_runs(q), repeat)  # type: ignore[misc]
                http_params: list[tuple[str, Any]] = [("limit", PAGE)]
                http_params += [("workflow_id", workflow)] if workflow else []
                http_params += [("status", s.value) for s in statuses]
                http_params += [("cursor", cursor.encode())] if cursor else []
                http_ms = _median_ms(lambda p=http_params: client.get("/api/runs", params=p).raise_for_status(), repeat)  # type: ignore[misc]
                raw_ms, old_ms = _raw_pages(raw, where, params, cursor, depth, repeat)
                ratio = store_ms / raw_ms if raw_ms else float("inf")
                print(
                    f"{label:<20} {depth:>9,} {store_ms:>7.2f}ms {http_ms:>7.2f}ms {raw_ms:>9.2f}ms "
                    f"{ratio:>5.1f}x {old_ms:>7.1f}ms"
                )
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
            fill_runs(path, args.runs)
            print(f"wrote {args.runs:,} runs in {time.perf_counter() - began:.0f} s", file=sys.stderr)
        else:
            conn = sqlite3.connect(path)
            migrate(conn)  # a kept file gets this version's indexes
            conn.close()
        with TestClient(create_app(ReceiverConfig(db_path=path, sweep_interval_s=0))) as client:
            asyncio.run(bench(path, args.runs, args.repeat, client))


if __name__ == "__main__":
    main()
