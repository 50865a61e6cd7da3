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
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from flowledger._wire import format_ts, new_event_id  # noqa: E402
from flowledger.receiver._config import IngestLimits  # noqa: E402
from flowledger.receiver._validate import prepare_event  # noqa: E402
from flowledger.receiver.store._event import PreparedEvent  # noqa: E402
from flowledger.receiver.store._protocol import PurgeSelection  # noqa: E402
from flowledger.receiver.store._sqlite import SqliteStore  # noqa: E402

_CHUNK_RUNS = 1_000


def run_events(producer: str, seq0: int, clock: int) -> list[dict[str, Any]]:
    """The 4 events of one small run."""
    run_id, span, node_span = new_event_id(), secrets.token_hex(8), secrets.token_hex(8)
    base = {"v": 1, "run_id": run_id, "producer_id": producer, "project": None}
    start, node_start = format_ts(clock), format_ts(clock + 1_000_000)
    common = {"node_id": "fetch", "span_id": node_span, "parent_span_id": span, "attempt": 1}
    datas = [
        (
            "run_started",
            start,
            {
                "workflow_id": "bench",
                "trigger_type": "manual",
                "trigger_data": {"order": 42},
                "dry_run": False,
                "span_id": span,
                "trace_id": secrets.token_hex(16),
            },
        ),
        ("node_started", node_start, {**common, "input": {"order": 42, "note": secrets.token_hex(16)}}),
        (
            "node_finished",
            format_ts(clock + 2_000_000),
            {**common, "status": "succeeded", "started_at": node_start, "duration_ms": 1.0, "output": {"ok": True}},
        ),
        (
            "run_finished",
            format_ts(clock + 3_000_000),
            {
                "status": "succeeded",
                "started_at": start,
                "duration_ms": 3.0,
                "cost": {"tokens": 1, "tool_calls": 0, "external_requests": 0, "usd": 0.001},
            },
        ),
    ]
    return [
        {**base, "event_id": new_event_id(), "kind": kind, "seq": i, "ts": ts, "producer_seq": seq0 + i, "data": data}
        for i, (kind, ts, data) in enumerate(datas)
    ]


async def fill(store: SqliteStore, runs: int) -> None:
    producer, seq, clock = new_event_id(), 0, time.time_ns() - 86_400 * 10**9
    limits = IngestLimits()
    for start in range(0, runs, _CHUNK_RUNS):
        raw = []
        for _ in range(min(_CHUNK_RUNS, runs - start)):
            raw += run_events(producer, seq, clock)
            seq += 4
            clock += 10_000_000
        prepared = [prepare_event(e, i, limits, None, plain_floats=True) for i, e in enumerate(raw)]
        events = [e for e in prepared if isinstance(e, PreparedEvent)]
        if len(events) != len(prepared):
            raise SystemExit(f"the benchmark's events are not valid: {prepared}")
        await store.append(events)


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
            await fill(store, args.runs)
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
