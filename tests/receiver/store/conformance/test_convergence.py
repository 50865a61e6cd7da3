"""Order-independent convergence through every engine: the fold's promise, kept by the stored projections and by
the sums folded beside them (error groups, statistics), before and after a rebuild."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowledger.receiver.store._error_groups import ErrorGroupQuery, error_fingerprint, normalize_message
from flowledger.receiver.store._event import PreparedEvent
from flowledger.receiver.store._protocol import Store
from flowledger.receiver.store._stats import StatsBy, StatsQuery
from tests.receiver._support import Producer, simple_run, typical_run
from tests.receiver.store.conformance.conftest import ENGINES, EngineFactory, fresh_postgres, prepared

_View = tuple[list[Any], dict[str, Any], dict[str, Any]]
"""A store's runs, and its sums (error groups, statistics) as folded and as rebuilt."""
_FINISHED_NODE = frozenset({"succeeded", "failed", "skipped"})


async def _sums(store: Store) -> dict[str, Any]:
    """The error groups (by type, message, node, workflow) and the statistics by node and by workflow."""
    groups: Counter[tuple[Any, ...]] = Counter()
    for group in await store.error_groups(ErrorGroupQuery(limit=1000)):
        key = (group["type"], group["message"], group["node_id"], group["workflow_id"])
        assert group["fingerprint"] == error_fingerprint(*key)
        groups[key] += group["count"]
    stats = {
        by.value: {g["key"]: g["by_status"] for g in await store.run_stats(StatsQuery(by=by))}
        for by in (StatsBy.NODE, StatsBy.WORKFLOW)
    }
    return {"groups": dict(groups), "stats": stats}


def _brute_sums(runs: list[Any]) -> dict[str, Any]:
    """What the sums must hold, computed from the runs as they ended: a failed attempt counts under its run's
    workflow, a failed run whose error names no node counts itself; an attempt's statistics are its node's."""
    groups: Counter[tuple[Any, ...]] = Counter()
    nodes: dict[str, Counter[str]] = {}
    workflows: dict[str, Counter[str]] = {}
    for run in runs:
        workflow = run["workflow_id"]
        for node in run["nodes"]:
            if node["status"] == "failed":
                error = node["error"]
                groups[error["type"], normalize_message(error["message"]), node["node_id"], workflow] += 1
            if node["status"] in _FINISHED_NODE:
                nodes.setdefault(f"{workflow or ''}/{node['node_id']}", Counter())[node["status"]] += 1
        if run["status"] in ("failed", "aborted") and run["error"]["node_id"] is None:
            error = run["error"]
            groups[error["type"], normalize_message(error["message"]), None, workflow] += 1
        if run["status"] in ("succeeded", "failed", "aborted"):
            workflows.setdefault(workflow or "", Counter())[run["status"]] += 1
    stats = {
        StatsBy.NODE.value: {key: dict(sorted(c.items())) for key, c in nodes.items()},
        StatsBy.WORKFLOW.value: {key: dict(sorted(c.items())) for key, c in workflows.items()},
    }
    return {"groups": dict(groups), "stats": stats}


def _store_view(engine: EngineFactory, folder: Path, batches: list[list[PreparedEvent]], run_ids: list[str]) -> _View:
    async def main() -> _View:
        store = engine(folder)
        await store.open()
        try:
            for batch in batches:
                await store.append(batch)
            runs = [await store.get_run(run_id) for run_id in run_ids]
            folded = await _sums(store)
            await store.rebuild()
            return runs, folded, await _sums(store)
        finally:
            await store.close()

    return asyncio.run(main())


def _arrival(data: st.DataObject, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events in an arrival order: any permutation (with replays), or one whose runs start last (every node
    event before its run's ``run_started``, as when a producer's first batch is delayed)."""
    shuffled = data.draw(st.permutations(events + data.draw(st.lists(st.sampled_from(events), max_size=5))))
    if data.draw(st.booleans()):
        shuffled.sort(key=lambda e: e["kind"] in ("run_started", "run_finished"))
    return shuffled


def _converges(engine: EngineFactory, data: st.DataObject) -> None:
    producer = Producer()
    runs = [typical_run(producer), simple_run(producer)]
    events = [e for run in runs for e in run.events]
    run_ids = [run.run_id for run in runs]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "a").mkdir()
        (Path(tmp) / "b").mkdir()
        expected = _store_view(engine, Path(tmp) / "a", [prepared(events)], run_ids)
        shuffled = _arrival(data, events)
        if data.draw(st.booleans()):  # one event per request, as a producer sending them one at a time
            batches = [prepared([event]) for event in shuffled]
        else:
            cuts = sorted(data.draw(st.lists(st.integers(0, len(shuffled)), max_size=4)))
            bounds = [0, *cuts, len(shuffled)]
            batches = [prepared(shuffled[a:b]) for a, b in itertools.pairwise(bounds) if b > a]
        got = _store_view(engine, Path(tmp) / "b", batches, run_ids)
    runs, folded, rebuilt = got
    assert runs == expected[0]
    brute = _brute_sums(runs)
    assert expected[1:] == (brute, brute)
    assert folded == brute
    assert rebuilt == brute


@pytest.mark.slow
@pytest.mark.parametrize("engine_name", sorted(ENGINES))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_stored_projection_converges_over_arrival_orders(engine_name: str, data: st.DataObject) -> None:
    """Through the real store, runs and nodes (payloads too) end the same whatever the order and batching (node
    events before their run's start too), and the error groups and statistics match a brute-force computation from
    the runs, as folded and after a rebuild."""
    _converges(ENGINES[engine_name], data)


@pytest.mark.slow
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_stored_projection_converges_over_arrival_orders_on_postgres(postgres_server: str, data: st.DataObject) -> None:
    """The same on PostgreSQL: each ordering folded into a database of its own."""
    _converges(fresh_postgres(postgres_server), data)
