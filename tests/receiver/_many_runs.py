"""Databases filled with many synthetic runs, fast: for the benchmarks.

:func:`fill_runs` writes rows straight into the ``runs`` projection (no
ledger), so it measures reading, not ingest: 20 workflows, runs three
seconds apart, statuses and triggers drawn from a fixed seed (the query and
viewer benchmarks, at a million runs). :func:`fill_ledger` appends small
complete runs through a Store, ledger and projections both (the purge and
integrity benchmarks).
"""

from __future__ import annotations

import random
import secrets
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any, Final

from flowledger._wire import RunStatus, TriggerType, format_ts, new_event_id
from flowledger.receiver._config import IngestLimits
from flowledger.receiver._validate import prepare_event
from flowledger.receiver.store._event import PreparedEvent
from flowledger.receiver.store._migrations import migrate
from flowledger.receiver.store._protocol import Store

__all__ = ["WORKFLOWS", "fill_ledger", "fill_runs", "ledger_run_events"]

WORKFLOWS: Final = 20
_INSERT_CHUNK: Final = 50_000
_STATUSES: Final = (
    [RunStatus.SUCCEEDED] * 85 + [RunStatus.FAILED] * 10 + [RunStatus.ABORTED] * 2 + [RunStatus.RUNNING] * 3
)
_TRIGGERS: Final = list(TriggerType)
_COLUMNS: Final = (
    "run_id, workflow_id, workflow_name, status, trigger_type, dry_run, started_at, completed_at, "
    "duration_ms, cost_usd, trace_id, last_seen_at"
)


def fill_runs(path: Path, count: int) -> None:
    """Write ``count`` runs of ``WORKFLOWS`` workflows (``workflow-0`` ...), three seconds apart, into a fresh file."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    migrate(conn)
    rng = random.Random(7)
    start_ns = time.time_ns() - count * 3_000_000_000
    sql = f"INSERT INTO runs ({_COLUMNS}) VALUES ({', '.join('?' * 12)})"
    conn.execute("BEGIN")
    rows: list[tuple[Any, ...]] = []
    for i in range(count):
        ns = start_ns + i * 3_000_000_000 + rng.randrange(1_000_000_000)
        status = rng.choice(_STATUSES)
        duration = None if status is RunStatus.RUNNING else rng.expovariate(1 / 800)
        run_id = str(uuid.UUID(int=(ns // 1_000_000) << 80 | 0x7000 << 64 | rng.getrandbits(62) | 1 << 63))
        workflow = f"workflow-{rng.randrange(WORKFLOWS)}"
        ended = None if duration is None else format_ts(ns + int(duration * 1e6))
        rows.append(
            (run_id, workflow, workflow, status.value, rng.choice(_TRIGGERS).value, int(rng.random() < 0.1),
             format_ts(ns), ended, duration, round(rng.random() / 100, 6), "0" * 32, format_ts(ns))
        )  # fmt: skip
        if len(rows) == _INSERT_CHUNK:
            conn.executemany(sql, rows)
            rows.clear()
    conn.executemany(sql, rows)
    conn.execute("COMMIT")
    conn.close()


_LEDGER_CHUNK_RUNS: Final = 1_000


def ledger_run_events(producer: str, seq0: int, clock: int) -> list[dict[str, Any]]:
    """The 4 events of one small run: run_started, a node's start and finish with input and output, run_finished."""
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


async def fill_ledger(store: Store, runs: int) -> None:
    """Append ``runs`` small complete runs of workflow ``bench`` (one producer, ten days ago) through ``store``."""
    producer, seq, clock = new_event_id(), 0, time.time_ns() - 86_400 * 10**9
    limits = IngestLimits()
    for start in range(0, runs, _LEDGER_CHUNK_RUNS):
        raw = []
        for _ in range(min(_LEDGER_CHUNK_RUNS, runs - start)):
            raw += ledger_run_events(producer, seq, clock)
            seq += 4
            clock += 10_000_000
        prepared = [prepare_event(e, i, limits, None, plain_floats=True) for i, e in enumerate(raw)]
        events = [e for e in prepared if isinstance(e, PreparedEvent)]
        if len(events) != len(prepared):
            raise SystemExit(f"the benchmark's events are not valid: {prepared}")
        await store.append(events)
