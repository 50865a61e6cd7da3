"""Purge: seconds to erase 100,000 runs, and what it leaves (file size, verify).

    python benchmarks/purge.py [--runs 100000] [--pass-runs 1000]

Fills a fresh database through the Store (4 events per run: run_started, a
node's start and finish with input and output, run_finished), then times,
on the same file: one retention-style pass of ``--pass-runs`` runs (what the
background task does at most per pass), then one purge of every remaining
run of the workflow. Prints the seconds, runs/s, entries whose payload was
erased, the file size before and after, and the time of a full ``verify``
afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.receiver._many_runs import fill_ledger  # noqa: E402

from flowledger.receiver.store._protocol import PurgeSelection  # noqa: E402
from flowledger.receiver.store._sqlite import SqliteStore  # noqa: E402


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--pass-runs", type=int, default=1_000, help="runs of the bounded (retention) pass")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "purge.db"
        store = SqliteStore(path)
        await store.open()
        started = time.perf_counter()
        try:
            await fill_ledger(store, args.runs)
        finally:
            await store.close()
        fill_s = time.perf_counter() - started
        size_before = path.stat().st_size
        store = SqliteStore(path)
        await store.open()
        started = time.perf_counter()
        bounded = await store.purge(
            PurgeSelection(workflow_id="bench", limit=args.pass_runs, finished_only=True, by="benchmark pass")
        )
        pass_s = time.perf_counter() - started
        started = time.perf_counter()
        rest = await store.purge(PurgeSelection(workflow_id="bench", by="benchmark"))
        purge_s = time.perf_counter() - started
        started = time.perf_counter()
        report = await store.verify()
        verify_s = time.perf_counter() - started
        await store.close()
        size_after = path.stat().st_size
    total = len(bounded.runs) + len(rest.runs)
    print(f"filled {args.runs:,} runs ({args.runs * 4:,} events) in {fill_s:.1f} s")
    print(
        f"bounded pass : {len(bounded.runs):>7,} runs in {pass_s:6.2f} s  ({len(bounded.runs) / pass_s:,.0f} runs/s; "
        "how long one retention pass holds the writer)"
    )
    print(
        f"one purge    : {len(rest.runs):>7,} runs in {purge_s:6.2f} s  ({len(rest.runs) / purge_s:,.0f} runs/s, "
        f"{rest.events:,} payloads erased, incremental vacuum and WAL checkpoint included)"
    )
    print(f"runs purged  : {total:,} of {args.runs:,}")
    print(f"file size    : {size_before / 2**20:,.1f} MiB before, {size_after / 2**20:,.1f} MiB after")
    print(
        f"verify after : {'intact' if report.ok else 'BROKEN: ' + str(report.problem)}, {report.events:,} entries, "
        f"{report.payloads_erased:,} payloads erased by {report.purges} purges, in {verify_s:.1f} s"
    )
    if not report.ok or total != args.runs:
        sys.exit("the purge did not leave a verifying ledger without those runs")


if __name__ == "__main__":
    asyncio.run(main())
