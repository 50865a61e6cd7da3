"""The Store conformance suite, sampling: runs dropped by sampling are counted per workflow, never made runs."""

from __future__ import annotations

import pytest

from flowledger.receiver.store._protocol import RunQuery, Store
from tests.receiver._support import RunEvents, simple_run
from tests.receiver.store.conformance.conftest import prepared

pytestmark = pytest.mark.asyncio


def _dropped(workflow_id: str, runs: int, project: str | None = None) -> RunEvents:
    events = RunEvents(workflow_id=workflow_id, project=project)
    events._event("run_sampled_out", {"workflow_id": workflow_id, "runs": runs})
    return events


async def test_sampled_out_runs_are_counted_per_workflow_and_project_and_survive_a_rebuild(store: Store) -> None:
    """Counts add up per workflow (scoped to a project when asked), make no run, and a rebuild counts them again."""
    kept = simple_run()
    dropped = [_dropped("a", 3), _dropped("a", 2, project="p"), _dropped("b", 1, project="p")]
    for events in dropped:
        await store.append(prepared(events.events, project=events.project))
    await store.append(prepared(kept.events))
    assert await store.sampled_out() == {"a": 5, "b": 1}
    assert await store.sampled_out(project="p") == {"a": 2, "b": 1}
    assert [run["run_id"] for run in (await store.list_runs(RunQuery())).runs] == [kept.run_id]
    assert (await store.rebuild()).clean
    assert await store.sampled_out() == {"a": 5, "b": 1}
