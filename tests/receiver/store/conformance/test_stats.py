"""The Store conformance suite, statistics: rollups against a brute-force computation over the same runs."""

from __future__ import annotations

import asyncio
import math
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowledger._money import nanos_to_usd, usd_to_nanos
from flowledger._wire import format_ts
from flowledger.receiver.store._protocol import EventOutcome, PurgeSelection, Store
from flowledger.receiver.store._stats import PERCENTILE_RELATIVE_ERROR, Bucket, StatsBy, StatsQuery
from tests.receiver._support import RunEvents
from tests.receiver.store.conformance.conftest import ENGINES, EngineFactory, prepared

pytestmark = pytest.mark.sqlite_only("statistics rollups are not built in the PostgreSQL engine yet")


_BASE_NS = 1_789_999_200 * 10**9  # 2026-09-21T14:00:00Z: on the hour, as the rollups count
_HOUR_NS = 3600 * 10**9

_run = st.fixed_dictionaries(
    {
        "workflow": st.sampled_from(["a", "b", "c"]),
        "agent": st.sampled_from([None, "bot-1", "bot-2"]),
        "status": st.sampled_from(["succeeded", "succeeded", "failed", "aborted"]),
        "hour": st.integers(0, 60),
        "minute": st.integers(0, 59),
        "duration_ms": st.one_of(
            st.just(0.0), st.floats(0.001, 10_000_000, allow_nan=False), st.integers(1, 5000).map(float)
        ),
        "usd": st.one_of(st.none(), st.decimals("0", "5", places=9).map(float)),
        "node_ms": st.floats(0.5, 50_000, allow_nan=False),
    }
)


def _events(spec: dict[str, Any]) -> RunEvents:
    """One finished run with one node attempt, started at the spec's hour and minute."""
    run = RunEvents(workflow_id=spec["workflow"])
    run.clock_ns = _BASE_NS + spec["hour"] * _HOUR_NS + spec["minute"] * 60 * 10**9
    run.start(**({"agent_id": spec["agent"]} if spec["agent"] else {}))
    run.node("fetch", status="failed" if spec["status"] == "failed" else "succeeded")
    node_finished = run.events[-1]["data"]
    node_finished["duration_ms"] = spec["node_ms"]
    run.finish(spec["status"], error_node=None)
    finish = run.events[-1]["data"]
    finish["duration_ms"] = spec["duration_ms"]
    if spec["usd"] is None:
        finish.pop("cost")
    else:
        finish["cost"] = {"usd": spec["usd"]}
    return run


def _nearest_rank(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p * len(ordered))) - 1]


def _brute(specs: list[dict[str, Any]], key_of: Any, lo: int | None, hi: int | None) -> dict[str, dict[str, Any]]:
    """Statistics computed from the runs themselves: what the rollups must answer."""
    out: dict[str, dict[str, Any]] = {}
    for spec in specs:
        if (lo is not None and spec["hour"] < lo) or (hi is not None and spec["hour"] >= hi):
            continue
        group = out.setdefault(key_of(spec), {"statuses": Counter(), "costs": [], "durations": []})
        group["statuses"][spec["status"]] += 1
        if spec["usd"] is not None:
            group["costs"].append(usd_to_nanos(spec["usd"]))
        group["durations"].append(spec["duration_ms"])
    return out


def _check(got: list[dict[str, Any]], want: dict[str, dict[str, Any]]) -> None:
    assert {g["key"] for g in got} == set(want)
    runs = [g["runs"] for g in got]
    assert runs == sorted(runs, reverse=True)
    for group in got:
        expected = want[group["key"]]
        total = sum(expected["statuses"].values())
        assert group["runs"] == total
        assert group["by_status"] == dict(sorted(expected["statuses"].items()))
        assert group["success_rate"] == expected["statuses"]["succeeded"] / total
        costs = expected["costs"]
        assert group["cost_usd"]["total"] == nanos_to_usd(sum(costs))
        assert group["cost_usd"]["min"] == (nanos_to_usd(min(costs)) if costs else None)
        assert group["cost_usd"]["max"] == (nanos_to_usd(max(costs)) if costs else None)
        assert group["cost_usd"]["avg"] == (nanos_to_usd(round(sum(costs) / len(costs))) if costs else None)
        durations = expected["durations"]
        assert group["duration_ms"]["avg"] == sum(round(d * 1000) for d in durations) / len(durations) / 1000
        for p, name in ((0.5, "p50"), (0.95, "p95")):
            exact = _nearest_rank(durations, p)
            assert abs(group["duration_ms"][name] - exact) <= exact * PERCENTILE_RELATIVE_ERROR * (1 + 1e-9)


async def _fill(store: Store, specs: list[dict[str, Any]]) -> list[RunEvents]:
    runs = [_events(spec) for spec in specs]
    outcomes = await store.append(prepared([e for run in runs for e in run.events]))
    assert {o for o, _ in outcomes} == {EventOutcome.ACCEPTED}
    return runs


def _at(hour: int) -> str:
    return format_ts(_BASE_NS + hour * _HOUR_NS)


@pytest.mark.parametrize("engine_name", sorted(ENGINES))
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    specs=st.lists(_run, min_size=1, max_size=40),
    window=st.tuples(st.none() | st.integers(0, 61), st.none() | st.integers(0, 61)),
)
def test_rollups_match_a_brute_force_computation(
    engine_name: str, specs: list[dict[str, Any]], window: tuple[int | None, int | None]
) -> None:
    """By workflow, agent and project, over any hour range: counts, sums, min/max exact, p50/p95 within 1 %."""
    factory: EngineFactory = ENGINES[engine_name]
    lo, hi = window

    async def main(folder: Path) -> None:
        store = factory(folder)
        await store.open()
        try:
            await _fill(store, specs)
            since = None if lo is None else _at(lo)
            until = None if hi is None else _at(hi)
            for by, key_of in (
                (StatsBy.WORKFLOW, lambda s: s["workflow"]),
                (StatsBy.AGENT, lambda s: s["agent"] or ""),
                (StatsBy.PROJECT, lambda s: ""),
            ):
                got = await store.run_stats(StatsQuery(by=by, since=since, until=until))
                want = {} if lo is not None and hi is not None and lo >= hi else _brute(specs, key_of, lo, hi)
                _check(got, want)
        finally:
            await store.close()

    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(main(Path(folder)))


@pytest.mark.asyncio
async def test_series_buckets_add_up_to_the_group(store: Store) -> None:
    """Hour and day buckets of a group sum to its totals; each bucket starts on its hour or day."""
    specs = [
        {"workflow": "a", "agent": None, "status": s, "hour": h, "minute": 5, "duration_ms": 10.0 * (h + 1),
         "usd": 0.25, "node_ms": 1.0}
        for h, s in ((0, "succeeded"), (1, "failed"), (1, "succeeded"), (30, "succeeded"))
    ]  # fmt: skip
    await _fill(store, specs)
    for bucket, starts in ((Bucket.HOUR, 3), (Bucket.DAY, 2)):
        [group] = await store.run_stats(StatsQuery(bucket=bucket))
        assert len(group["series"]) == starts
        assert sum(p["runs"] for p in group["series"]) == group["runs"] == 4
        assert sum(p["by_status"].get("failed", 0) for p in group["series"]) == 1
        assert sum(p["cost_usd"]["total"] for p in group["series"]) == pytest.approx(1.0)
        if bucket is Bucket.DAY:
            assert all(p["start"].endswith("T00:00:00.000000Z") for p in group["series"])


@pytest.mark.asyncio
async def test_nodes_are_grouped_by_workflow_and_node(store: Store) -> None:
    """by=node counts attempts per workflow/node with their own statuses and durations."""
    specs = [
        {"workflow": w, "agent": None, "status": s, "hour": 1, "minute": 1, "duration_ms": 5.0, "usd": None,
         "node_ms": ms}
        for w, s, ms in (("a", "succeeded", 10.0), ("a", "failed", 30.0), ("b", "succeeded", 20.0))
    ]  # fmt: skip
    await _fill(store, specs)
    got = {g["key"]: g for g in await store.run_stats(StatsQuery(by=StatsBy.NODE))}
    assert set(got) == {"a/fetch", "b/fetch"}
    assert got["a/fetch"]["by_status"] == {"failed": 1, "succeeded": 1}
    assert got["a/fetch"]["duration_ms"]["avg"] == 20.0
    assert got["a/fetch"]["success_rate"] == 0.5


@pytest.mark.asyncio
async def test_statistics_survive_a_purge_and_a_rebuild(store: Store) -> None:
    """Purging runs leaves the statistics as they were; a rebuild after it too."""
    specs = [
        {"workflow": "a", "agent": "x", "status": "succeeded", "hour": h, "minute": 0, "duration_ms": 100.0 + h,
         "usd": 0.5, "node_ms": 1.0}
        for h in range(6)
    ]  # fmt: skip
    runs = await _fill(store, specs)
    before = {by: await store.run_stats(StatsQuery(by=by)) for by in StatsBy}
    await store.purge(PurgeSelection(run_ids=tuple(r.run_id for r in runs[:4]), by="cli"))
    assert {by: await store.run_stats(StatsQuery(by=by)) for by in StatsBy} == before
    await store.rebuild()
    assert {by: await store.run_stats(StatsQuery(by=by)) for by in StatsBy} == before


@pytest.mark.asyncio
async def test_a_run_that_changes_its_finish_moves_between_statuses(store: Store) -> None:
    """A replay counts nothing more; an earlier run_finished arriving late moves the run to its status."""
    [run] = await _fill(store, [{"workflow": "a", "agent": None, "status": "succeeded", "hour": 0, "minute": 0,
                                 "duration_ms": 50.0, "usd": 0.1, "node_ms": 1.0}])  # fmt: skip
    await store.append(prepared(run.events))
    [group] = await store.run_stats(StatsQuery())
    assert group["by_status"] == {"succeeded": 1}
    finish = run.events[-1]
    earlier = {**finish, "event_id": finish["event_id"][:-4] + "0000", "seq": 50, "producer_seq": 500}
    earlier["data"] = {**finish["data"], "status": "failed", "duration_ms": 10.0,
                       "error": {"type": "E", "message": "m", "node_id": None}}  # fmt: skip
    await store.append(prepared([earlier]))
    [group] = await store.run_stats(StatsQuery())
    assert (group["runs"], group["by_status"]) == (1, {"failed": 1})
    assert group["duration_ms"]["avg"] == 10.0
