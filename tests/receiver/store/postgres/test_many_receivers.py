"""Two receiver processes on one PostgreSQL database: concurrent ingest, one SIGKILLed and restarted.

The end state must be one verified chain holding every event exactly once,
and at every moment exactly one receiver holding the sweeper's lock (the
survivor takes over when the leader is killed); a run left silent is marked
stuck once.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import asyncpg
import httpx
import pytest

from flowledger.receiver.store.postgres import PostgresStore
from flowledger.receiver.store.postgres._sweep import SWEEPER_LOCK, SWEEPER_NAME
from tests.receiver._support import Producer, RunEvents, simple_run

START_TIMEOUT_S = 60.0
RUNS = 1_200
BATCH_RUNS = 6

_HOLDERS_SQL = (
    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = $1 AND l.objid::bigint = $2"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Receiver:
    """One ``flowledger serve`` process on the shared database."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWLEDGER_")}
        env.update(FLOWLEDGER_RECEIVER_SWEEP_INTERVAL_S="0.2", FLOWLEDGER_RECEIVER_STUCK_AFTER_S="1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "flowledger", "serve", "--db", self.db_url, "--port", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, "a receiver exited at start"
            assert time.monotonic() < deadline, "a receiver did not start"
            time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)


async def _sweeper_holders(db_url: str) -> list[str]:
    conn = await asyncpg.connect(db_url)
    try:
        rows = await conn.fetch(_HOLDERS_SQL, SWEEPER_LOCK >> 32, SWEEPER_LOCK & 0xFFFFFFFF)
        return [str(row[0]) for row in rows]
    finally:
        await conn.close()


def _post_until_stored(receivers: list[Receiver], events: list[dict[str, Any]], rng: random.Random) -> int:
    """Post one batch to a random receiver, then to the others until one answers 200; return the attempts."""
    order = rng.sample(receivers, len(receivers))
    attempts = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for receiver in order:
            attempts += 1
            try:
                answer = httpx.post(f"{receiver.url}/v1/events", json={"events": events}, timeout=10)
            except httpx.TransportError:
                continue
            if answer.status_code == 200:
                return attempts
        time.sleep(0.05)
    raise AssertionError("no receiver stored a batch within 60 s")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_receivers_one_killed_and_restarted_lose_and_double_nothing(postgres_url: str) -> None:
    """Concurrent ingest through two receivers, the sweeping one SIGKILLed mid-run and restarted:
    the chain verifies, every event is stored once, one receiver sweeps at a time and takes over."""
    first, second = Receiver(postgres_url), Receiver(postgres_url)
    first.start()
    second.start()
    receivers = [first, second]
    try:
        producer = Producer()
        runs = [simple_run(producer) for _ in range(RUNS)]
        silent = RunEvents(producer).start(heartbeat_interval_s=0.2)  # never finishes: the sweeper marks it
        batches = [[e for run in runs[i : i + BATCH_RUNS] for e in run.events] for i in range(0, RUNS, BATCH_RUNS)]
        batches[0] = [*silent.events, *batches[0]]
        replays = [batches[i] for i in range(0, len(batches), 5)]  # delivered again: at-least-once on the wire
        holders_seen: list[list[str]] = []
        errors: list[BaseException] = []
        done: list[int] = []

        def client(part: list[list[dict[str, Any]]], seed: int) -> None:
            rng = random.Random(seed)
            try:
                for batch in part:
                    _post_until_stored(receivers, batch, rng)
                    done.append(1)
            except BaseException as exc:  # reported by the test thread
                errors.append(exc)

        work = batches + replays
        threads = [threading.Thread(target=client, args=(work[i::3], i)) for i in range(3)]
        for thread in threads:
            thread.start()
        while len(done) < len(work) // 4:  # ingest well under way, and a sweeper elected
            assert not errors, errors
            time.sleep(0.05)
        holders = asyncio.run(_sweeper_holders(postgres_url))
        holders_seen.append(holders)
        assert len(holders) == 1, holders
        leader = first if holders[0] == f"{SWEEPER_NAME} {first.pid}" else second
        other = second if leader is first else first
        assert holders[0] == f"{SWEEPER_NAME} {leader.pid}"
        leader.kill()  # mid-ingest, holding the sweeper's lock
        assert len(done) < len(work), "ingest ended before the kill: the test proves nothing"
        deadline = time.monotonic() + 30
        while True:
            holders = asyncio.run(_sweeper_holders(postgres_url))
            if holders == [f"{SWEEPER_NAME} {other.pid}"]:
                break
            assert len(holders) <= 1, holders
            assert time.monotonic() < deadline, f"no takeover: {holders}"
            time.sleep(0.1)
        holders_seen.append(holders)
        leader.start()  # restarted on a new port... the same port, free again
        for thread in threads:
            thread.join(240)
        assert not errors, errors
        holders = asyncio.run(_sweeper_holders(postgres_url))
        holders_seen.append(holders)
        assert holders == [f"{SWEEPER_NAME} {other.pid}"], "the restarted receiver must not take the lock held"
        # The silent run is marked stuck (once: its status is stuck, the ledger has no event of it but its start).
        deadline = time.monotonic() + 30
        while httpx.get(f"{other.url}/api/runs/{silent.run_id}", timeout=10).json()["status"] != "stuck":
            assert time.monotonic() < deadline, "the silent run was never marked stuck"
            time.sleep(0.2)
    finally:
        for receiver in receivers:
            receiver.stop()

    expected = {e["event_id"] for batch in batches for e in batch}

    async def check() -> tuple[int, set[str], Any]:
        conn = await asyncpg.connect(postgres_url)
        try:
            count = int(await conn.fetchval("SELECT count(*) FROM ledger"))
            ids = {str(row[0]) for row in await conn.fetch("SELECT event_id FROM ledger")}
        finally:
            await conn.close()
        store = PostgresStore(postgres_url, readonly=True)
        await store.open()
        try:
            return count, ids, await store.verify()
        finally:
            await store.close()

    count, ids, report = asyncio.run(check())
    assert report.ok, report
    assert ids == expected, f"lost: {len(expected - ids)}, unexpected: {len(ids - expected)}"
    assert count == len(expected), f"doubled: {count - len(expected)}"
    assert report.events == count
    assert all(len(h) == 1 for h in holders_seen), holders_seen
