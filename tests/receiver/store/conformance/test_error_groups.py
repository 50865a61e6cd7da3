"""The Store conformance suite, error groups: a flood is one row, counts follow the fold, purges and rebuilds."""

from __future__ import annotations

from typing import Any

import pytest

from flowledger.receiver.store._error_groups import ERROR_GROUP_SAMPLES, ErrorGroupQuery, error_fingerprint
from flowledger.receiver.store._protocol import EventOutcome, PurgeSelection, Store
from flowledger.receiver.store._stats import StatsBy, StatsQuery
from tests.receiver._support import RunEvents, simple_run, typical_run
from tests.receiver.store.conformance.conftest import prepared

pytestmark = pytest.mark.asyncio


async def _append(store: Store, *runs: RunEvents) -> None:
    outcomes = await store.append(prepared([e for run in runs for e in run.events]))
    assert {outcome for outcome, _ in outcomes} == {EventOutcome.ACCEPTED}


def _timeout_run(seconds: float, *, workflow_id: str = "order-intake", project: str | None = None) -> RunEvents:
    """A run whose node ``price`` times out after ``seconds`` and fails the run."""
    run = RunEvents(workflow_id=workflow_id, project=project).start().node("price", status="failed")
    for event in run.events:
        if event["kind"] == "node_finished":
            event["data"]["error"] = {"type": "TimeoutError", "message": f"timed out after {seconds}s"}
    run.finish("failed", error_node="price")
    run.events[-1]["data"]["error"] = {
        "type": "TimeoutError",
        "message": f"timed out after {seconds}s",
        "node_id": "price",
    }
    return run


def _groups_by_fingerprint(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {g["fingerprint"]: g for g in groups}


async def test_a_flood_of_one_error_is_one_group(store: Store) -> None:
    """Twelve timeouts of different durations are one group of count 12 with the newest runs as samples."""
    runs = [_timeout_run(1.5 + i) for i in range(12)]
    await _append(store, *runs)
    groups = await store.error_groups(ErrorGroupQuery())
    assert len(groups) == 1
    group = groups[0]
    assert list(group) == [
        "fingerprint", "type", "message", "node_id", "workflow_id",
        "count", "first_seen", "last_seen", "sample_run_ids", "sample_runs",
    ]  # fmt: skip
    assert (group["type"], group["message"], group["node_id"], group["workflow_id"], group["count"]) == (
        "TimeoutError", "timed out after <n>s", "price", "order-intake", 12,
    )  # fmt: skip
    finished = sorted((e["ts"], r.run_id) for r in runs for e in r.events if e["kind"] == "node_finished")
    assert len(group["sample_run_ids"]) == ERROR_GROUP_SAMPLES
    assert set(group["sample_run_ids"]) == {run_id for _, run_id in finished[-ERROR_GROUP_SAMPLES:]}
    assert group["sample_runs"] == [{"run_id": run_id, "project": None} for run_id in group["sample_run_ids"]]
    assert group["first_seen"] <= group["last_seen"]
    run = await store.get_run(runs[0].run_id)
    assert run is not None
    assert run["error"]["fingerprint"] == group["fingerprint"]


async def test_groups_come_biggest_first_and_filter(store: Store) -> None:
    """Two workflows' errors: biggest first; workflow_id, limit and a time range narrow the answer."""
    await _append(store, *[_timeout_run(3) for _ in range(3)], *[typical_run(workflow_id="billing") for _ in range(2)])
    groups = await store.error_groups(ErrorGroupQuery())
    assert [(g["workflow_id"], g["count"]) for g in groups] == [("order-intake", 3), ("billing", 2)]
    assert [g["workflow_id"] for g in await store.error_groups(ErrorGroupQuery(workflow_id="billing"))] == ["billing"]
    assert len(await store.error_groups(ErrorGroupQuery(limit=1))) == 1
    last = max(g["last_seen"] for g in groups)
    assert await store.error_groups(ErrorGroupQuery(since="9999-01-01T00:00:00.000000Z")) == []
    assert await store.error_groups(ErrorGroupQuery(until="0001-01-01T00:00:00.000000Z")) == []
    assert (
        len(await store.error_groups(ErrorGroupQuery(since=min(g["first_seen"] for g in groups), until=last + "~")))
        == 2
    )


async def test_a_run_failing_outside_any_node_counts_itself(store: Store) -> None:
    """A failed run whose error names no node is a failure of its own, node None; succeeded runs count nothing."""
    failed = RunEvents().start().finish("failed")
    await _append(store, failed, simple_run())
    groups = await store.error_groups(ErrorGroupQuery())
    assert [(g["type"], g["message"], g["node_id"], g["count"]) for g in groups] == [
        ("ValueError", "price broke", None, 1)
    ]
    assert groups[0]["sample_run_ids"] == [failed.run_id]
    assert groups[0]["fingerprint"] == error_fingerprint("ValueError", "price broke", None, "order-intake")


async def test_groups_are_per_project(store: Store) -> None:
    """A project sees only its own failures; without a project every failure counts."""
    await _append(
        store, _timeout_run(1, project="alpha"), _timeout_run(2, project="alpha"), _timeout_run(3, project="beta")
    )
    assert [g["count"] for g in await store.error_groups(ErrorGroupQuery(project="alpha"))] == [2]
    assert [g["count"] for g in await store.error_groups(ErrorGroupQuery(project="beta"))] == [1]
    assert [g["count"] for g in await store.error_groups(ErrorGroupQuery())] == [3]


async def test_replays_change_nothing_and_a_winning_success_takes_the_failure_back(store: Store) -> None:
    """Events sent twice count once; a later node_finished that wins the attempt's tiebreak removes its failure."""
    run = _timeout_run(5)
    await _append(store, run)
    await store.append(prepared(run.events))
    assert [g["count"] for g in await store.error_groups(ErrorGroupQuery())] == [1]
    failed_finish = next(e for e in run.events if e["kind"] == "node_finished")
    success = {**failed_finish, "event_id": failed_finish["event_id"][:-4] + "ffff", "seq": 99, "producer_seq": 999}
    success["data"] = {k: v for k, v in failed_finish["data"].items() if k != "error"} | {"status": "succeeded"}
    await store.append(prepared([success]))
    assert await store.error_groups(ErrorGroupQuery()) == []


async def test_purged_runs_keep_counting_and_leave_the_samples(store: Store) -> None:
    """After a purge the count stays and the purged run is no sample; a rebuild changes neither."""
    gone, kept = _timeout_run(1), _timeout_run(2)
    await _append(store, gone, kept)
    await store.purge(PurgeSelection(run_ids=(gone.run_id,), by="cli"))
    [group] = await store.error_groups(ErrorGroupQuery())
    assert (group["count"], group["sample_run_ids"]) == (2, [kept.run_id])
    await store.rebuild()
    assert await store.error_groups(ErrorGroupQuery()) == [group]


async def test_node_events_before_their_run_start_count_under_its_workflow(store: Store) -> None:
    """A failed run's events sent one at a time, node_finished, node_started, run_started, run_finished: one group
    under the run's workflow, and the node's statistics too; a rebuild leaves both as they are."""
    run = RunEvents(workflow_id="ship").start().node("price", status="failed").finish("failed", error_node="price")
    run_started, node_started, node_finished, run_finished = run.events
    for event in (node_finished, node_started, run_started, run_finished):
        await store.append(prepared([event]))
    for _ in range(2):
        groups = await store.error_groups(ErrorGroupQuery())
        assert [(g["workflow_id"], g["node_id"], g["count"]) for g in groups] == [("ship", "price", 1)]
        assert groups[0]["fingerprint"] == error_fingerprint("ValueError", "price broke", "price", "ship")
        stats = await store.run_stats(StatsQuery(by=StatsBy.NODE))
        assert [(s["key"], s["by_status"]) for s in stats] == [("ship/price", {"failed": 1})]
        await store.rebuild()
