"""Conformance: every engine filters runs by their context and time, lists a run's children, and rebuilds them."""

from __future__ import annotations

import pytest

from flowledger.receiver.store._protocol import EventOutcome, RunQuery, Store
from flowledger.receiver.store._run_filter import RunContextFilter
from flowledger.receiver.store._views import RunFilter
from tests.receiver._support import RunEvents, simple_run
from tests.receiver.store.conformance.conftest import prepared

pytestmark = pytest.mark.asyncio


def _run(project: str | None = None, **context: str) -> RunEvents:
    run = simple_run(project=project)
    run.events[0]["data"].update(context)
    return run


async def _append(store: Store, *runs: RunEvents) -> None:
    outcomes = await store.append(prepared([e for run in runs for e in run.events]))
    assert {outcome for outcome, _ in outcomes} == {EventOutcome.ACCEPTED}


async def _ids(store: Store, context: RunContextFilter, **query: object) -> set[str]:
    page = await store.list_runs(RunQuery(context=context, limit=100, **query))  # type: ignore[arg-type]
    assert page.total == len(page.runs)
    return {r["run_id"] for r in page.runs}


async def test_runs_filter_by_each_context_field_and_time(store: Store) -> None:
    """Each context field narrows listings, export and the viewer's list; since/until narrow by start time."""
    parent = _run("travel", user_id="u-7", agent_id="planner", intent="plan")
    child = _run("travel", user_id="u-7", agent_id="booker", parent_run_id=parent.run_id)
    other = _run("other", agent_id="booker")
    await _append(store, parent, child, other)
    assert await _ids(store, RunContextFilter(user_id="u-7")) == {parent.run_id, child.run_id}
    assert await _ids(store, RunContextFilter(agent_id="booker")) == {child.run_id, other.run_id}
    assert await _ids(store, RunContextFilter(agent_id="booker", project="travel")) == {child.run_id}
    assert await _ids(store, RunContextFilter(intent="plan")) == {parent.run_id}
    assert await _ids(store, RunContextFilter(parent_run_id=parent.run_id)) == {child.run_id}
    assert await _ids(store, RunContextFilter(project="travel"), project="other") == set()
    starts = sorted((r.started_at, r.run_id) for r in (parent, child, other))
    middle = starts[1][0]
    assert await _ids(store, RunContextFilter(since=middle)) == {starts[1][1], starts[2][1]}
    assert await _ids(store, RunContextFilter(until=middle)) == {starts[0][1]}
    exported = [
        r async for r in store.iter_runs(RunQuery(context=RunContextFilter(agent_id="booker")), with_nodes=True)
    ]
    assert {r["run_id"] for r in exported} == {child.run_id, other.run_id}
    assert all(r["input"] == {"order": 42, "password": "[REDACTED]"} for r in exported)
    viewer = await store.viewer_runs(RunFilter(context=RunContextFilter(user_id="u-7")), limit=10)
    assert {r["run_id"] for r in viewer.runs} == {parent.run_id, child.run_id}


async def test_a_run_lists_its_children_within_its_project(store: Store) -> None:
    """get_run has children (newest first, with workflow and status) and their count; a rebuild keeps them."""
    parent = _run("travel")
    children = [_run("travel", parent_run_id=parent.run_id) for _ in range(3)]
    await _append(store, parent, *children)
    run = await store.get_run(parent.run_id)
    assert run is not None
    assert run["children"]["count"] == 3
    listed = [c["run_id"] for c in run["children"]["runs"]]
    assert sorted(listed) == sorted(c.run_id for c in children)
    assert [c["status"] for c in run["children"]["runs"]] == ["succeeded"] * 3
    drift = await store.rebuild()
    assert drift.clean
    rebuilt = await store.get_run(parent.run_id, project="travel")
    assert rebuilt is not None
    assert rebuilt["children"] == run["children"]
    assert (await store.get_run(children[0].run_id))["parent_run_id"] == parent.run_id  # type: ignore[index]
