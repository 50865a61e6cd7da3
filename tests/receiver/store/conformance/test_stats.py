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
from tests.receiver.store.conformance.conftest import ENGINES, EngineFactory, fresh_postgres, prepared

_BASE_NS = 1_789_999_200 * 10**9  # 2026-09-21T14:00:00Z: on the hour, as the rollups count
_HOUR_NS = 3600 * 10**9

_HOURS = 45 * 24
"""Runs start over 45 days from _BASE_NS: ranges cross months (September to November)."""

_run = st.fixed_dictionaries(
    {
        "workflow": st.sampled_from(["a", "b", "c"]),
        "agent": st.sampled_from([None, "bot-1", "bot-2"]),
        "project": st.sampled_from([None, "p1", "p2"]),
        "status": st.sampled_from(["succeeded", "succeeded", "failed", "aborted"]),
        "hour": st.one_of(st.integers(0, 60), st.integers(0, _HOURS)),
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
    run = RunEvents(workflow_id=spec["workflow"], project=spec.get("project"))
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


def _node_view(spec: dict[str, Any]) -> dict[str, Any]:
    """What the spec's node attempt counts: its own status and duration, no cost."""
    status = "failed" if spec["status"] == "failed" else "succeeded"
    return {**spec, "status": status, "duration_ms": spec["node_ms"], "usd": None}


_KEYS: dict[StatsBy, Any] = {
    StatsBy.WORKFLOW: lambda s: s["workflow"],
    StatsBy.AGENT: lambda s: s["agent"] or "",
    StatsBy.PROJECT: lambda s: s.get("project") or "",
    StatsBy.NODE: lambda s: f"{s['workflow']}/fetch",
}


def _point(spec: dict[str, Any], bucket: Bucket | None) -> str:
    hour = _at(spec["hour"])
    return "" if bucket is None else hour if bucket is Bucket.HOUR else hour[:10] + "T00:00:00.000000Z"


def _brute(
    specs: list[dict[str, Any]],
    key_of: Any,
    lo: int | None,
    hi: int | None,
    *,
    project: str | None = None,
    bucket: Bucket | None = None,
) -> dict[tuple[str, str], dict[str, Any]]:
    """Statistics computed from the runs themselves, per group and series point: what the rollups must answer."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for spec in specs:
        if (lo is not None and spec["hour"] < lo) or (hi is not None and spec["hour"] >= hi):
            continue
        if project is not None and spec.get("project") != project:
            continue
        for point in {"", _point(spec, bucket)}:
            group = out.setdefault((key_of(spec), point), {"statuses": Counter(), "costs": [], "durations": []})
            group["statuses"][spec["status"]] += 1
            if spec["usd"] is not None:
                group["costs"].append(usd_to_nanos(spec["usd"]))
            group["durations"].append(spec["duration_ms"])
    return out


def _check_figures(got: dict[str, Any], expected: dict[str, Any]) -> None:
    total = sum(expected["statuses"].values())
    assert got["runs"] == total
    assert got["by_status"] == dict(sorted(expected["statuses"].items()))
    assert got["success_rate"] == expected["statuses"]["succeeded"] / total
    costs = expected["costs"]
    assert got["cost_usd"]["total"] == nanos_to_usd(sum(costs))
    assert got["cost_usd"]["min"] == (nanos_to_usd(min(costs)) if costs else None)
    assert got["cost_usd"]["max"] == (nanos_to_usd(max(costs)) if costs else None)
    assert got["cost_usd"]["avg"] == (nanos_to_usd(round(sum(costs) / len(costs))) if costs else None)
    durations = expected["durations"]
    assert got["duration_ms"]["avg"] == sum(round(d * 1000) for d in durations) / len(durations) / 1000
    for p, name in ((0.5, "p50"), (0.95, "p95")):
        exact = _nearest_rank(durations, p)
        assert abs(got["duration_ms"][name] - exact) <= exact * PERCENTILE_RELATIVE_ERROR * (1 + 1e-9)


def _check(got: list[dict[str, Any]], want: dict[tuple[str, str], dict[str, Any]]) -> None:
    assert {g["key"] for g in got} == {key for key, point in want if point == ""}
    runs = [g["runs"] for g in got]
    assert runs == sorted(runs, reverse=True)
    for group in got:
        _check_figures(group, want[(group["key"], "")])
        if "series" in group:
            points = sorted(point for key, point in want if key == group["key"] and point)
            assert [p["start"] for p in group["series"]] == points
            for p in group["series"]:
                _check_figures(p, want[(group["key"], p["start"])])


async def _fill(store: Store, specs: list[dict[str, Any]]) -> list[RunEvents]:
    runs = [_events(spec) for spec in specs]
    for project in {spec.get("project") for spec in specs}:
        events = [e for run, spec in zip(runs, specs, strict=True) if spec.get("project") == project
                  for e in run.events]  # fmt: skip
        outcomes = await store.append(prepared(events, project=project))
        assert {o for o, _ in outcomes} == {EventOutcome.ACCEPTED}
    return runs


def _at(hour: int) -> str:
    return format_ts(_BASE_NS + hour * _HOUR_NS)


async def _check_all(store: Store, specs: list[dict[str, Any]], lo: int | None, hi: int | None) -> None:
    since = None if lo is None else _at(lo)
    until = None if hi is None else _at(hi)
    empty = lo is not None and hi is not None and lo >= hi
    for by, key_of in _KEYS.items():
        seen = [_node_view(s) for s in specs] if by is StatsBy.NODE else specs
        for project in (None, "p1"):
            for bucket in (None, Bucket.DAY, Bucket.HOUR):
                query = StatsQuery(by=by, since=since, until=until, project=project, bucket=bucket)
                got = await store.run_stats(query)
                _check(got, {} if empty else _brute(seen, key_of, lo, hi, project=project, bucket=bucket))


@pytest.mark.parametrize("engine_name", sorted(ENGINES))
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    specs=st.lists(_run, min_size=1, max_size=40),
    window=st.tuples(
        st.none() | st.integers(0, 61) | st.integers(0, _HOURS + 1),
        st.none() | st.integers(0, 61) | st.integers(0, _HOURS + 1),
    ),
    purged=st.sets(st.integers(0, 39)),
)
def test_rollups_match_a_brute_force_computation(
    engine_name: str, specs: list[dict[str, Any]], window: tuple[int | None, int | None], purged: set[int]
) -> None:
    """By workflow, agent, project and node, over all projects or one, any hour range (within a day, across days
    and months), with hour and day series: counts, sums, min/max exact, p50/p95 within 1 %; the same after some
    of the runs are purged."""
    _rollups_match(ENGINES[engine_name], specs, window, purged)


@pytest.mark.slow
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    specs=st.lists(_run, min_size=1, max_size=40),
    window=st.tuples(
        st.none() | st.integers(0, 61) | st.integers(0, _HOURS + 1),
        st.none() | st.integers(0, 61) | st.integers(0, _HOURS + 1),
    ),
    purged=st.sets(st.integers(0, 39)),
)
def test_rollups_match_a_brute_force_computation_on_postgres(
    postgres_server: str, specs: list[dict[str, Any]], window: tuple[int | None, int | None], purged: set[int]
) -> None:
    """The same on PostgreSQL, each example on a database of its own."""
    _rollups_match(fresh_postgres(postgres_server), specs, window, purged)


def _rollups_match(
    factory: EngineFactory, specs: list[dict[str, Any]], window: tuple[int | None, int | None], purged: set[int]
) -> None:
    lo, hi = window

    async def main(folder: Path) -> None:
        store = factory(folder)
        await store.open()
        try:
            runs = await _fill(store, specs)
            await _check_all(store, specs, lo, hi)
            gone = tuple(runs[i].run_id for i in sorted(purged) if i < len(runs))
            if gone:
                await store.purge(PurgeSelection(run_ids=gone, by="cli"))
                await _check_all(store, specs, lo, hi)  # statistics survive purges
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


@pytest.mark.asyncio
async def test_sums_past_64_bits_are_stored_read_and_rebuilt(store: Store) -> None:
    """Costs and durations whose sums pass 2**63 nano-dollars or microseconds (about 9.2 billion USD, or 292,000
    years), in one row, across the rows a range reads, and in a single amount, are stored, answered and rebuilt:
    exact on PostgreSQL, the nearest float on SQLite (its own arithmetic past 2**63), never an error."""
    long_ms = 2.5e14  # about 7,900 years (a run ends before the year 9999): 2.5e17 µs, 37 of them pass 2**63
    specs = [
        {"workflow": "a", "agent": None, "status": "succeeded", "hour": hour, "minute": m, "duration_ms": ms,
         "usd": usd, "node_ms": 1.0}
        for hour, m, usd, ms in ((2, 0, 5e9, 5.0), (2, 1, 5e9, 5.0), (2, 2, 9.3e9, 5.0), (2, 3, 0.25, 5.0),
                                 (30, 0, 5e9, 5.0), (50, 0, 5e9, 5.0))
    ]  # fmt: skip
    specs += [{**specs[0], "workflow": "long", "minute": m, "usd": None, "duration_ms": long_ms} for m in range(40)]
    await _fill(store, specs)
    queries = [StatsQuery(by=by, bucket=bucket) for by in StatsBy for bucket in (None, Bucket.DAY, Bucket.HOUR)]
    queries += [StatsQuery(since=_at(1), until=_at(49)), StatsQuery(since=_at(2), until=_at(31), bucket=Bucket.DAY)]
    before = [await store.run_stats(query) for query in queries]
    whole = {group["key"]: group for group in before[0]}
    assert (whole["a"]["runs"], whole["long"]["runs"]) == (6, 40)
    assert whole["a"]["cost_usd"]["total"] == pytest.approx(29.3e9 + 0.25, rel=1e-12)
    assert (whole["a"]["cost_usd"]["min"], whole["a"]["cost_usd"]["max"]) == (0.25, pytest.approx(9.3e9, rel=1e-12))
    assert whole["long"]["duration_ms"]["avg"] == pytest.approx(long_ms, rel=1e-12)
    ranged = {group["key"]: group for group in before[-2]}  # hours 1 to 48: the rows of two days, theirs past 2**63
    assert ranged["a"]["runs"] == 5
    assert ranged["a"]["cost_usd"]["total"] == pytest.approx(24.3e9 + 0.25, rel=1e-12)
    assert (await store.rebuild()).clean
    after = [await store.run_stats(query) for query in queries]
    assert _approx_equal(after, before)


def _approx_equal(got: Any, want: Any) -> bool:
    """Equal, but floats within a relative 1e-12 (sums past 2**63 kept as floats, added in another order)."""
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(_approx_equal(got[k], want[k]) for k in want)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(_approx_equal, got, want))
    if isinstance(want, float) and isinstance(got, float | int):
        return got == pytest.approx(want, rel=1e-12)
    return bool(got == want)
