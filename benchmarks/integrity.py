"""Coverage and reconciliation on a large ledger: what a check costs beside what it replaces.

    python benchmarks/integrity.py [--runs 100000] [--repeat 3]

Fills a fresh database through the Store (4 events per run, as
benchmarks/purge.py does: ``tests.receiver._many_runs.fill_ledger``), then times on the same file, each the median of
``--repeat`` runs:

* ``coverage`` of the whole ledger, and the counts it makes read through
  its partial indexes beside the same counts with every index refused
  (``+column``: a scan of each table, what the check would cost without
  them);
* one periodic reconciliation pass (500 runs of the sweep, the default),
  beside a full ``reconcile`` of every run and a ``rebuild`` (drop and refold
  everything in one write transaction).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.receiver._many_runs import fill_ledger  # noqa: E402

from flowledger._wire import now_ts  # noqa: E402
from flowledger.receiver._config import DEFAULT_RECONCILE_RUNS_PER_PASS  # noqa: E402
from flowledger.receiver.store._integrity import CoverageQuery, ReconcileScope  # noqa: E402
from flowledger.receiver.store._sqlite import SqliteStore  # noqa: E402

_COUNTS = (
    "SELECT count(*) FROM node_runs WHERE {no_index}status = 'running'",
    "SELECT count(*) FROM runs WHERE {no_index}started_event_id IS NULL",
    "SELECT count(*) FROM producers WHERE {no_index}max_seq >= events",
    "SELECT count(*) FROM runs WHERE {no_index}status IN ('running', 'stuck')",
)
"""The counts coverage makes, read through its indexes, or with them refused (a unary ``+`` on the column)."""


async def _median_s(work: Callable[[], Awaitable[Any]], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _counts(path: Path, no_index: str) -> None:
    import sqlite3

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        for sql in _COUNTS:
            conn.execute(sql.format(no_index=no_index)).fetchone()
    finally:
        conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "integrity.db"
        store = SqliteStore(path)
        await store.open()
        try:
            started = time.perf_counter()
            await fill_ledger(store, args.runs)
            fill_s = time.perf_counter() - started
            query = CoverageQuery(now=now_ts(), stuck_after_s=300)
            report = await store.coverage(query)
            coverage_s = await _median_s(lambda: store.coverage(query), args.repeat)
            counts_s = await _median_s(lambda: asyncio.to_thread(_counts, path, ""), args.repeat)
            scan_s = await _median_s(lambda: asyncio.to_thread(_counts, path, "+"), args.repeat)
            one_pass = ReconcileScope(sweep_from="", sweep_runs=DEFAULT_RECONCILE_RUNS_PER_PASS)
            pass_s = await _median_s(lambda: store.reconcile(one_pass), args.repeat)
            full = await store.reconcile(ReconcileScope.everything())
            full_s = await _median_s(lambda: store.reconcile(ReconcileScope.everything()), args.repeat)
            rebuild_s = await _median_s(store.rebuild, args.repeat)
        finally:
            await store.close()
    print(f"filled {args.runs:,} runs ({args.runs * 4:,} events) in {fill_s:.1f} s; medians of {args.repeat}")
    print(f"coverage, whole report : {coverage_s * 1000:9.1f} ms  ({report.status.value}; 4 kinds counted and sampled)")
    print(
        f"its counts, indexed    : {counts_s * 1000:9.1f} ms; by table scans (index refused): {scan_s * 1000:.1f} ms "
        f"(ratio {scan_s / counts_s:,.1f}x)"
    )
    print(
        f"reconcile, one pass    : {pass_s * 1000:9.1f} ms  ({DEFAULT_RECONCILE_RUNS_PER_PASS} runs, read snapshot, "
        "writer never held)"
    )
    print(
        f"reconcile, every run   : {full_s * 1000:9.1f} ms  ({full.runs_checked:,} runs, "
        f"{'clean' if full.clean else 'DRIFT'}; {full_s / pass_s:,.0f}x one pass)"
    )
    print(
        f"rebuild (reference)    : {rebuild_s * 1000:9.1f} ms  (every run refolded in one write transaction; "
        f"a pass is {pass_s / rebuild_s:.1%} of it)"
    )
    if not full.clean or full.runs_checked != args.runs:
        sys.exit("reconcile did not find the filled ledger clean")


if __name__ == "__main__":
    asyncio.run(main())
