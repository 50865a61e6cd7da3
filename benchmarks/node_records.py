"""What cost by category, custom metrics and artifacts add, beside the same work without them.

Run: ``.venv/bin/python benchmarks/node_records.py``. Three measurements,
each in one process with its reference measured in the same run:

* SDK: the median wall time of one ``@flowledger.node`` call that reports
  nothing, and of the same call that reports a cost the old way, a cost by
  category (tokens in and out with dollars, requests by service), three
  metric values, or a 1 KiB artifact; events go to the in-memory sink
  (``capture_events``), so the figures are the hooks' own work. Cases
  alternate round by round.
* Receiver: events per second the SQLite store appends (ledger, fold,
  projections, one transaction per batch of 500) for runs whose attempts
  report nothing, beside runs whose attempts report a cost breakdown and two
  metric series (so every finish also adds to ``custom_metrics``); the
  median over rounds, the two kinds alternating.
* Artifact hashing: the median time ``flowledger.artifact`` takes for a
  50 MiB file (just under the hashing limit), beside reading the same file
  through in 1 MiB chunks without hashing, and for a file one byte over the
  limit (not hashed: a ``stat``).
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flowledger
from flowledger._wire import format_ts, new_event_id
from flowledger.instrument._artifact import HASH_LIMIT_BYTES
from flowledger.receiver._config import IngestLimits
from flowledger.receiver._validate import prepare_event
from flowledger.receiver.store._event import PreparedEvent
from flowledger.receiver.store._sqlite import SqliteStore
from flowledger.testing import capture_events

SDK_ROUNDS = 31
SDK_CALLS = 300
STORE_ROUNDS = 9
STORE_RUNS = 500
NODES_PER_RUN = 4
BATCH = 500
HASH_ROUNDS = 5


# --- SDK ------------------------------------------------------------------------------


def _sdk() -> None:
    @flowledger.node
    def plain(x: int) -> int:
        return x + 1

    @flowledger.node
    def old_cost(x: int) -> int:
        flowledger.cost(tokens=1500, tool_calls=1, external_requests=3, usd=0.0981)
        return x + 1

    @flowledger.node
    def by_category(x: int) -> int:
        flowledger.cost(tokens_in=(1200, 0.0036), tokens_out=(300, 0.0045), external_requests={"stripe": (3, 0.09)})
        return x + 1

    @flowledger.node
    def metrics(x: int) -> int:
        flowledger.metric("provider_cache_hit", 1, provider="openai")
        flowledger.metric("provider_cache_hit", 0, provider="openai")
        flowledger.metric("latency_s", 0.25)
        return x + 1

    blob = secrets.token_bytes(1024)

    @flowledger.node
    def artifact(x: int) -> int:
        flowledger.artifact(blob, name="answer.bin")
        return x + 1

    cases: dict[str, Callable[[int], int]] = {
        "node, nothing reported (reference)": plain,
        "node + cost, totals only": old_cost,
        "node + cost by category": by_category,
        "node + 3 metric values": metrics,
        "node + 1 KiB artifact": artifact,
    }
    samples: dict[str, list[int]] = {name: [] for name in cases}
    with capture_events() as events, flowledger.run("bench"):
        for _ in range(SDK_ROUNDS):
            for name, fn in cases.items():
                out = samples[name]
                for i in range(SDK_CALLS):
                    start = time.perf_counter_ns()
                    fn(i)
                    out.append(time.perf_counter_ns() - start)
            events.clear()
    reference = statistics.median(samples["node, nothing reported (reference)"])
    print(f"SDK, median wall time per node call ({SDK_ROUNDS} rounds x {SDK_CALLS} calls, in-memory sink)")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"  {name:38s} {median / 1000:7.1f} us   x{median / reference:.2f}")


# --- receiver -------------------------------------------------------------------------


def _run_events(*, with_records: bool) -> list[dict[str, Any]]:
    run_id, producer = new_event_id(), new_event_id()
    clock = time.time_ns() - 3_600_000_000_000
    events: list[dict[str, Any]] = []

    def event(kind: str, data: dict[str, Any]) -> None:
        nonlocal clock
        clock += 5_000_000
        events.append(
            {
                "v": 1,
                "event_id": new_event_id(),
                "kind": kind,
                "run_id": run_id,
                "seq": len(events),
                "ts": format_ts(clock),
                "producer_id": producer,
                "producer_seq": len(events),
                "data": data,
            }
        )

    trace, run_span = secrets.token_hex(16), secrets.token_hex(8)
    started = format_ts(clock + 5_000_000)
    event(
        "run_started",
        {"workflow_id": "bench", "trigger_type": "manual", "dry_run": False, "trace_id": trace, "span_id": run_span},
    )
    for n in range(NODES_PER_RUN):
        data: dict[str, Any] = {
            "node_id": f"n{n}",
            "span_id": secrets.token_hex(8),
            "attempt": 1,
            "status": "succeeded",
            "started_at": format_ts(clock),
            "duration_ms": 4.0,
            "input": {"n": n},
            "output": {"ok": True},
            "cost": {"tokens": 1500, "tool_calls": 0, "external_requests": 3, "usd": 0.0981},
        }
        if with_records:
            data["cost"]["breakdown"] = {
                "tokens_in": {"count": 1200, "usd_nanos": 3_600_000},
                "tokens_out": {"count": 300, "usd_nanos": 4_500_000},
                "external_requests:stripe": {"count": 3, "usd_nanos": 90_000_000},
            }
            data["workflow_id"] = "bench"
            data["metrics"] = [
                {
                    "name": "cache_hit",
                    "labels": {"provider": "openai"},
                    "count": 2,
                    "sum": 1,
                    "min": 0,
                    "max": 1,
                    "value": 0,
                },
                {"name": "latency_s", "labels": {}, "count": 1, "sum": 0.25, "min": 0.25, "max": 0.25, "value": 0.25},
            ]
        event("node_finished", data)
    event("run_finished", {"status": "succeeded", "started_at": started, "duration_ms": 30.0})
    return events


def _prepared(events: list[dict[str, Any]]) -> list[PreparedEvent]:
    out = []
    for index, raw in enumerate(events):
        prepared = prepare_event(raw, index, IngestLimits(), None)
        assert isinstance(prepared, PreparedEvent), prepared
        out.append(prepared)
    return out


async def _append_rate(folder: Path, *, with_records: bool) -> float:
    store = SqliteStore(folder / f"{secrets.token_hex(4)}.db")
    await store.open()
    try:
        events = _prepared([e for _ in range(STORE_RUNS) for e in _run_events(with_records=with_records)])
        start = time.perf_counter()
        for first in range(0, len(events), BATCH):
            await store.append(events[first : first + BATCH])
        return len(events) / (time.perf_counter() - start)
    finally:
        await store.close()


def _receiver(folder: Path) -> None:
    rates: dict[bool, list[float]] = {False: [], True: []}
    for round_number in range(STORE_ROUNDS):
        for with_records in (False, True) if round_number % 2 else (True, False):  # neither always goes first
            rates[with_records].append(asyncio.run(_append_rate(folder, with_records=with_records)))
    plain, records = statistics.median(rates[False]), statistics.median(rates[True])
    events = STORE_RUNS * (NODES_PER_RUN + 2)
    print(f"\nReceiver, SQLite append: {events} events a round, batches of {BATCH}, median of {STORE_ROUNDS} rounds")
    print(f"  attempts with cost totals only (reference)   {plain:9.0f} events/s")
    print(f"  attempts with breakdown and 2 metric series  {records:9.0f} events/s   x{records / plain:.2f}")


# --- artifacts ------------------------------------------------------------------------


def _hashing(folder: Path) -> None:
    under, over = folder / "under.bin", folder / "over.bin"
    under.write_bytes(secrets.token_bytes(HASH_LIMIT_BYTES))
    with over.open("wb") as f:
        f.truncate(HASH_LIMIT_BYTES + 1)

    def read_through() -> None:
        with under.open("rb") as f:
            while f.read(1024 * 1024):
                pass

    @flowledger.node
    def record(path: Path) -> None:
        flowledger.artifact(path)

    times: dict[str, list[float]] = {"read": [], "under": [], "over": []}
    with capture_events(), flowledger.run("bench"):
        for _ in range(HASH_ROUNDS):
            for name, fn in (("read", read_through), ("under", lambda: record(under)), ("over", lambda: record(over))):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    read = statistics.median(times["read"])
    print(f"\nArtifacts, median of {HASH_ROUNDS} (file in the page cache)")
    print(f"  reading 50 MiB in 1 MiB chunks (reference)    {read * 1000:7.1f} ms")
    under_s = statistics.median(times["under"])
    print(f"  artifact(), 50 MiB file, hashed               {under_s * 1000:7.1f} ms   x{under_s / read:.2f}")
    print(f"  artifact(), 50 MiB + 1 byte, not hashed       {statistics.median(times['over']) * 1000:7.3f} ms")


def main() -> None:
    _sdk()
    with tempfile.TemporaryDirectory() as tmp:
        _receiver(Path(tmp))
        _hashing(Path(tmp))


if __name__ == "__main__":
    main()
