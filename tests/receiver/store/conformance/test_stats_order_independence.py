"""The Store conformance suite, statistics whatever order a run's events arrive in: a run's cost follows its
winning ``run_finished``, and min and max leave with the runs that leave a row, as folded and after a rebuild."""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowledger._wire import new_event_id
from flowledger.receiver.store._protocol import Store
from flowledger.receiver.store._sqlite import SqliteStore
from flowledger.receiver.store._stats import Bucket, StatsBy, StatsQuery
from tests.receiver.store.conformance.conftest import EngineFactory, fresh_postgres, prepared

_START = "2026-03-01T10:00:00Z"
_QUERIES = [StatsQuery(by=by, bucket=bucket) for by in StatsBy for bucket in (None, Bucket.DAY, Bucket.HOUR)]


class _Producer:
    """Wire events of one producer, numbered as it sends them."""

    def __init__(self) -> None:
        self.producer_id = new_event_id()
        self.seq = 0

    def event(self, run_id: str, kind: str, data: dict[str, Any], ts: str = _START) -> dict[str, Any]:
        self.seq += 1
        return {"v": 1, "event_id": new_event_id(), "kind": kind, "run_id": run_id, "seq": self.seq, "ts": ts,
                "producer_id": self.producer_id, "producer_seq": self.seq, "data": data}  # fmt: skip

    def started(
        self, run_id: str, *, agent: str | None = None, workflow: str = "w", ts: str = _START
    ) -> dict[str, Any]:
        data = {"workflow_id": workflow, "trigger_type": "manual", "dry_run": False, "trace_id": "a" * 32,
                "span_id": "b" * 16, **({"agent_id": agent} if agent else {})}  # fmt: skip
        return self.event(run_id, "run_started", data, ts)

    def finished(
        self, run_id: str, status: str, usd: float | None, ms: float, *, workflow: str = "w", started: str = _START
    ) -> dict[str, Any]:
        data: dict[str, Any] = {"status": status, "started_at": started, "duration_ms": ms, "workflow_id": workflow}
        if usd is not None:
            data["cost"] = {"usd": usd, "tokens": 99}
        if status != "succeeded":
            data["error"] = {"type": "E", "message": "m", "node_id": None}
        return self.event(run_id, "run_finished", data, started)

    def heartbeat(self, run_id: str, usd: float, ts: str) -> dict[str, Any]:
        return self.event(run_id, "heartbeat", {"cost": {"usd": usd}}, ts)

    def node(self, run_id: str, node_id: str, status: str, ms: float, started: str) -> dict[str, Any]:
        data = {"node_id": node_id, "span_id": secrets.token_hex(8), "parent_span_id": "b" * 16, "trace_id": "a" * 32,
                "attempt": 1, "status": status, "started_at": started, "duration_ms": ms}  # fmt: skip
        return self.event(run_id, "node_finished", data, started)


@pytest.fixture
def fresh(engine_kind: str, request: pytest.FixtureRequest) -> EngineFactory:
    """A factory of stores each empty (a file, or a database of its own)."""
    if engine_kind == "postgres":
        return fresh_postgres(request.getfixturevalue("postgres_server"))
    return lambda folder: SqliteStore(folder / "stats.db", readers=2)


_counter = iter(range(1_000_000))


async def _answers(
    fresh: EngineFactory, tmp_path: Path, batches: list[list[dict[str, Any]]], run_ids: tuple[str, ...] = ()
) -> tuple[list[Any], list[Any], list[Any]]:
    """Each query's answer, and each run, as folded from ``batches`` (a request each) into a new store; and each
    query's answer after a rebuild."""
    folder = tmp_path / f"store{next(_counter)}"
    folder.mkdir()
    store: Store = fresh(folder)
    await store.open()
    try:
        for batch in batches:
            await store.append(prepared(batch))
        folded = [await store.run_stats(query) for query in _QUERIES]
        runs = [await store.get_run(run_id) for run_id in run_ids]
        assert (await store.rebuild()).runs_changed == []
        return folded, runs, [await store.run_stats(query) for query in _QUERIES]
    finally:
        await store.close()


def _group(answer: list[dict[str, Any]], key: str) -> dict[str, Any]:
    [group] = [g for g in answer if g["key"] == key]
    return group


@pytest.mark.asyncio
async def test_a_runs_cost_follows_the_run_finished_that_wins(fresh: EngineFactory, tmp_path: Path) -> None:
    """Of two run_finished events, the one that wins the status gives the run its cost (in either order), and the
    statistics count that cost, as folded and after a rebuild."""
    p = _Producer()
    run = new_event_id()
    start = p.started(run)
    won = p.finished(run, "succeeded", 1.5, 100.0)
    lost = p.finished(run, "failed", 7.0, 500.0)  # the later event id, the later finish
    beat = p.heartbeat(run, 3.0, "2026-03-01T10:00:05Z")
    for batches in ([[start, won, lost, beat]], [[lost], [beat], [start], [won]], [[won], [lost, start]]):
        folded, [got], rebuilt = await _answers(fresh, tmp_path, batches, (run,))
        assert got is not None
        assert (got["status"], got["duration_ms"], got["finish_conflicts"]) == ("succeeded", 100.0, ["failed"])
        assert (got["cost"]["usd"], got["cost"]["tokens"]) == (1.5, 99)
        cost = _group(folded[0], "w")["cost_usd"]
        assert (cost["total"], cost["min"], cost["max"]) == (1.5, 1.5, 1.5)
        assert rebuilt == folded


@pytest.mark.asyncio
async def test_when_the_winner_has_no_cost_the_next_finish_by_the_same_order_gives_it(
    fresh: EngineFactory, tmp_path: Path
) -> None:
    """When the winning run_finished carries no cost, the cost is that of the earliest-finishing other one that
    carries a cost (not the one with the larger event id), and beats every heartbeat's, in any order."""
    p = _Producer()
    run = new_event_id()
    events = [p.started(run), p.finished(run, "succeeded", None, 100.0), p.finished(run, "aborted", 9.0, 300.0),
              p.finished(run, "failed", 7.0, 500.0), p.heartbeat(run, 3.0, "2026-03-01T10:00:05Z")]  # fmt: skip
    for batches in ([events], [[e] for e in reversed(events)]):
        folded, [got], rebuilt = await _answers(fresh, tmp_path, batches, (run,))
        assert got is not None
        assert (got["status"], got["cost"]["usd"]) == ("succeeded", 9.0)
        assert _group(folded[0], "w")["cost_usd"]["total"] == 9.0
        assert rebuilt == folded


@pytest.mark.asyncio
async def test_min_and_max_leave_with_a_run_that_leaves_a_group(fresh: EngineFactory, tmp_path: Path) -> None:
    """A run counted under no agent until its run_started names one takes its min, max and the percentiles
    clamped to them out of the group it leaves: the figures are those of a rebuild."""
    p = _Producer()
    x, y = new_event_id(), new_event_id()
    batches = [
        [p.started(y), p.finished(y, "succeeded", 1.0, 10.0)],
        [p.finished(x, "succeeded", 100.0, 9000.0)],
        [p.started(x, agent="a1")],
    ]
    folded, _, rebuilt = await _answers(fresh, tmp_path, batches)
    by_agent = folded[_QUERIES.index(StatsQuery(by=StatsBy.AGENT))]
    none = _group(by_agent, "")
    assert (none["runs"], none["cost_usd"]["min"], none["cost_usd"]["max"]) == (1, 1.0, 1.0)
    assert (none["duration_ms"]["p50"], none["duration_ms"]["p95"]) == (10.0, 10.0)
    assert _group(by_agent, "a1")["cost_usd"]["max"] == 100.0
    assert rebuilt == folded


@pytest.mark.asyncio
async def test_a_late_finish_that_wins_takes_its_min_and_max_along(fresh: EngineFactory, tmp_path: Path) -> None:
    """A run_finished arriving late that wins the status moves the run to its status with its own cost and
    duration: the row it leaves keeps only what its other runs gave it."""
    p = _Producer()
    a, b = new_event_id(), new_event_id()
    batches = [
        [p.started(a), p.finished(a, "succeeded", 0.5, 20.0), p.started(b), p.finished(b, "succeeded", 9.0, 900.0)],
        [p.finished(b, "failed", 0.25, 5.0)],  # finishes earlier: wins
    ]
    folded, _, rebuilt = await _answers(fresh, tmp_path, batches)
    series = _group(folded[_QUERIES.index(StatsQuery(by=StatsBy.WORKFLOW, bucket=Bucket.HOUR))], "w")
    assert (series["cost_usd"]["min"], series["cost_usd"]["max"]) == (0.25, 0.5)
    assert rebuilt == folded


def _runs(rng: random.Random, p: _Producer, count: int) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Runs whose events may conflict: two finishes, heartbeats with costs, an agent named only by run_started,
    attempts of a workflow named only by run_started."""
    for i in range(count):
        run = new_event_id()
        minute = rng.randrange(0, 60 * 30)  # 30 hours: rows of two days
        start = f"2026-03-{1 + minute // 1440:02d}T{minute % 1440 // 60:02d}:{minute % 60:02d}:00.000000Z"
        workflow = rng.choice(["w1", "w2"])
        events = [p.started(run, agent=rng.choice([None, "a1", "a2"]), workflow=workflow, ts=start)]
        for _ in range(rng.choice([1, 1, 2, 3])):
            status = rng.choice(["succeeded", "failed", "aborted"])
            usd = rng.choice([None, 0.1, 0.25 + i, 3.0, 42.125])
            ms = rng.choice([0.0, 1.0, 12.5, 400.0 + i, 90_000.0])
            events.append(p.finished(run, status, usd, ms, workflow=rng.choice([workflow, "w3"]), started=start))
        for _ in range(rng.randrange(0, 3)):
            events.append(p.heartbeat(run, rng.choice([0.5, 7.0 + i]), start[:17] + f"{rng.randrange(60):02d}Z"))
        for _ in range(rng.randrange(0, 3)):
            node_ms = rng.choice([2.0, 30.0 + i, 700.0])
            events.append(p.node(run, rng.choice(["fetch", "price"]), rng.choice(["succeeded", "failed"]), node_ms,
                                 start))  # fmt: skip
        yield run, events


@pytest.mark.asyncio
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_statistics_are_the_same_whatever_the_arrival_order(
    fresh: EngineFactory, tmp_path: Path, seed: int
) -> None:
    """The same events folded in their order in one request, and shuffled over many (each run's events in any
    order, node events before their run's start), answer every statistics query the same, and as a rebuild does."""
    rng = random.Random(seed)
    runs = list(_runs(rng, _Producer(), 40))
    in_order = [[e for _, events in runs for e in events]]
    shuffled = list(in_order[0])
    rng.shuffle(shuffled)
    cuts = sorted(rng.sample(range(1, len(shuffled)), 12))
    batches = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(shuffled)], strict=True)]
    run_ids = tuple(run for run, _ in runs)
    expected, expected_runs, expected_rebuilt = await _answers(fresh, tmp_path, in_order, run_ids)
    got, got_runs, got_rebuilt = await _answers(fresh, tmp_path, batches, run_ids)
    assert got_runs == expected_runs
    assert expected_rebuilt == expected
    assert got == expected
    assert got_rebuilt == expected
