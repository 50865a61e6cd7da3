"""Coverage on the store: a run past its deadline still heartbeating misses its run_finished; one within it does not."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from flowledger._wire import now_ts
from flowledger.receiver.store._integrity import CoverageKind, CoverageQuery, CoverageStatus
from flowledger.receiver.store._protocol import EventOutcome
from flowledger.receiver.store._sqlite import SqliteStore
from tests.receiver._support import RunEvents
from tests.receiver.store.conformance.conftest import prepared

_NS_PER_S = 1_000_000_000


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """An open store on a fresh file."""
    the_store = SqliteStore(tmp_path / "c.db")
    await the_store.open()
    yield the_store
    await the_store.close()


def _alive_run(*, started_s_ago: float, deadline_s: float | None) -> RunEvents:
    """A run started a while ago that sent a heartbeat a second ago."""
    run = RunEvents()
    run.clock_ns = time.time_ns() - int(started_s_ago * _NS_PER_S)
    run.start(limits={"deadline_s": deadline_s, "budget_usd": None})
    run.clock_ns = time.time_ns() - _NS_PER_S
    return run.heartbeat()


@pytest.mark.asyncio
async def test_a_run_past_its_deadline_misses_its_run_finished(store: SqliteStore) -> None:
    """Past deadline plus grace: reported even though it heartbeats; within its deadline, or without one: not."""
    late = _alive_run(started_s_ago=600, deadline_s=60)
    in_time = _alive_run(started_s_ago=600, deadline_s=100_000)
    no_deadline = _alive_run(started_s_ago=600, deadline_s=None)
    outcomes = await store.append(prepared([e for r in (late, in_time, no_deadline) for e in r.events]))
    assert {o for o, _ in outcomes} == {EventOutcome.ACCEPTED}
    report = await store.coverage(CoverageQuery(now=now_ts(), stuck_after_s=3600))
    tally = report.kinds[CoverageKind.RUN_FINISHED_MISSING]
    assert tally.count == 1
    assert (tally.samples[0]["run_id"], tally.samples[0]["deadline_s"]) == (late.run_id, 60)
    assert report.status is CoverageStatus.FAIL_CORE_MISSING
    strict = await store.coverage(CoverageQuery(now=now_ts(), stuck_after_s=3600, workflow_id="another"))
    assert strict.status is CoverageStatus.PASS


@pytest.mark.asyncio
async def test_silence_counts_against_the_runs_own_heartbeat_interval(store: SqliteStore) -> None:
    """A run silent 100 s is unfinished with a 30 s threshold, but not when it heartbeats every 60 s (3 x 60)."""
    run = RunEvents()
    run.clock_ns = time.time_ns() - 100 * _NS_PER_S
    run.start(heartbeat_interval_s=60.0)
    quick = RunEvents()
    quick.clock_ns = time.time_ns() - 100 * _NS_PER_S
    quick.start(heartbeat_interval_s=1.0)
    await store.append(prepared([*run.events, *quick.events]))
    report = await store.coverage(CoverageQuery(now=now_ts(), stuck_after_s=30))
    samples = report.kinds[CoverageKind.RUN_FINISHED_MISSING].samples
    assert [s["run_id"] for s in samples] == [quick.run_id]
