"""Moving a ledger to PostgreSQL and back: ``flowledger migrate`` on about 100,000 events, beside verify alone.

    python benchmarks/migrate.py [--events 100000] [--postgres-url URL]

Builds a SQLite ledger of realistic runs through the store (a quarter of
them with retries, mapped nodes and heartbeats), then times ``flowledger
migrate --from sqlite:PATH --to postgresql://...`` (copy, rebuild of the
projections, verify of both), the way back into a new file (``--from
postgresql://... --to sqlite:PATH``) and, for reference in the same run,
``flowledger verify`` of each database alone. Without ``--postgres-url`` a
throwaway cluster of the machine's PostgreSQL binaries is started (as the
tests do).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests._postgres import postgres_cluster  # noqa: E402
from tests.receiver._support import Producer, simple_run, typical_run  # noqa: E402
from tests.receiver.store.conformance.conftest import prepared  # noqa: E402

from flowledger.receiver.store._sqlite import SqliteStore  # noqa: E402

RUNS_PER_BATCH = 150


async def build(path: Path, target: int) -> int:
    """A SQLite ledger of at least ``target`` events; returns how many."""
    store = SqliteStore(path)
    await store.open()
    producer, stored = Producer(), 0
    try:
        while stored < target:
            runs = [typical_run(producer) if i % 4 == 0 else simple_run(producer) for i in range(RUNS_PER_BATCH)]
            events = [e for run in runs for e in run.events]
            await store.append(prepared(events))
            stored += len(events)
    finally:
        await store.close()
    return stored


async def fresh_database(server: str) -> str:
    name = f"flowledger_migrate_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return server.rsplit("/", 1)[0] + "/" + name


def timed(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "flowledger", *args], capture_output=True, text=True)
    return time.perf_counter() - started, done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="at least this many events in the ledger")
    parser.add_argument("--postgres-url", default=None, help="a PostgreSQL server (default: a throwaway one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        server = args.postgres_url or stack.enter_context(postgres_cluster())
        path = Path(tmp) / "ledger.db"
        started = time.perf_counter()
        events = asyncio.run(build(path, args.events))
        print(f"built a SQLite ledger of {events:,} events in {time.perf_counter() - started:.1f} s")
        target = asyncio.run(fresh_database(server))
        seconds, done = timed("migrate", "--from", f"sqlite:{path}", "--to", target)
        print(f"flowledger migrate          : {seconds:6.1f} s, exit {done.returncode} (copy, rebuild, verify both)")
        for line in (done.stdout + done.stderr).strip().splitlines():
            print(f"    {line}")
        seconds, done = timed("verify", "--db", str(path))
        print(f"flowledger verify (SQLite)  : {seconds:6.1f} s  {done.stdout.strip()}")
        seconds, done = timed("verify", "--db", target)
        print(f"flowledger verify (Postgres): {seconds:6.1f} s  {done.stdout.strip()}")
        back = Path(tmp) / "back.db"
        seconds, done = timed("migrate", "--from", target, "--to", f"sqlite:{back}")
        print(f"flowledger migrate, back    : {seconds:6.1f} s, exit {done.returncode} (copy, rebuild, verify both)")
        for line in (done.stdout + done.stderr).strip().splitlines():
            print(f"    {line}")


if __name__ == "__main__":
    main()
