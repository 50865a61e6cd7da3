"""A database filled with many synthetic runs, fast: for the query and viewer benchmarks at a million runs.

Rows go straight into the ``runs`` projection (no ledger), so it measures
reading, not ingest: 20 workflows, runs three seconds apart, statuses and
triggers drawn from a fixed seed.
"""

from __future__ import annotations

import random
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any, Final

from flowledger._wire import RunStatus, TriggerType, format_ts
from flowledger.receiver.store._migrations import migrate

__all__ = ["WORKFLOWS", "fill_runs"]

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
