"""Run listings page through runs of one id in several projects: each run has a place of its own in the order.

A run is ``(project, run_id)``, so with API keys off the same id may name runs of several projects, and
runs made from one trigger can share a start time to the microsecond. Newest first, then by run id, then
by project: a keyset cursor stands between any two of them, for every engine.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import pytest

from flowledger.receiver.store._protocol import RunQuery, Store
from flowledger.receiver.store._views import PageDirection, RunFilter, RunPageCursor
from tests.receiver._support import RunEvents
from tests.receiver.store.conformance.conftest import prepared

_PROJECTS: Final = (None, "alpha", "beta", "gamma")
"""No project is a namespace of its own, and sorts before every name."""


async def _twins(store: Store) -> list[tuple[str, str | None]]:
    """Two run ids, each used by every project of :data:`_PROJECTS` (eight runs started at one instant),
    and an older run; their ``(run_id, project)`` in the listing order."""
    first = RunEvents().start()
    second = RunEvents().start()
    second.events[0]["ts"] = first.started_at
    older = RunEvents(project="alpha").start()
    for run in (first, second):
        for project in _PROJECTS:
            events = [{**event, "project": project} for event in run.events]
            await store.append(prepared(events, project=project))
    await store.append(prepared(older.events, project="alpha"))
    ids = sorted((first.run_id, second.run_id), reverse=True)
    tied = [(run_id, project) for run_id in ids for project in _PROJECTS]
    return [*tied, (older.run_id, "alpha")] if older.started_at < first.started_at else [(older.run_id, "alpha"), *tied]


def _key(run: dict[str, Any]) -> tuple[str, str | None]:
    return run["run_id"], run["project"]


@pytest.mark.asyncio
async def test_paging_one_run_at_a_time_sees_every_projects_run_once(store: Store) -> None:
    """GET /api/runs' cursor with a limit of 1: every run of a shared id and start time comes once, in order."""
    expected = await _twins(store)
    seen: list[tuple[str, str | None]] = []
    cursor: RunPageCursor | None = None
    for _ in range(len(expected) + 1):
        page = await store.list_runs(RunQuery(limit=1, cursor=cursor))
        seen += [_key(run) for run in page.runs]
        if page.next is None:
            break
        cursor = RunPageCursor.decode(page.next.encode())
    assert seen == expected
    whole = await store.list_runs(RunQuery(limit=50))
    assert [_key(run) for run in whole.runs] == expected
    exported = [_key(run) async for run in store.iter_runs(RunQuery(), with_nodes=False)]
    assert exported == expected


@pytest.mark.asyncio
async def test_the_viewer_pages_older_and_back_newer_through_tied_runs(store: Store) -> None:
    """The viewer's run list, a run a page: older to the end, then newer back to the start, each run once."""
    expected = await _twins(store)
    older: list[tuple[str, str | None]] = []
    page = await store.viewer_runs(RunFilter(), limit=1)
    older += [_key(run) for run in page.runs]
    while page.older is not None:
        page = await store.viewer_runs(RunFilter(), limit=1, cursor=page.older, direction=PageDirection.OLDER)
        older += [_key(run) for run in page.runs]
        assert len(older) <= len(expected)
    assert older == expected
    newer: list[tuple[str, str | None]] = []
    while page.newer is not None:
        page = await store.viewer_runs(RunFilter(), limit=1, cursor=page.newer, direction=PageDirection.NEWER)
        newer += [_key(run) for run in page.runs]
        assert len(newer) <= len(expected)
    # Paging newer ends on the first page, which the viewer shows whole (here: its one newest run).
    assert newer == list(reversed(expected[:-1]))


@pytest.mark.asyncio
async def test_a_cursor_made_before_the_order_had_the_project_still_pages(store: Store) -> None:
    """A token of ``(started_at, run_id)`` alone (made by an older receiver) is accepted: the next page starts
    after every project's run of that start time and id, as it did before."""
    expected = await _twins(store)
    first = await store.list_runs(RunQuery(limit=1))
    assert first.next is not None
    old = RunPageCursor(first.next.started_at, first.next.run_id)
    assert RunPageCursor.decode(old.encode()) == old
    rest = await store.list_runs(RunQuery(limit=50, cursor=old))
    assert [_key(run) for run in rest.runs] == [key for key in expected if key[0] != first.next.run_id]


async def _with_unstarted(store: Store) -> list[tuple[str, str | None]]:
    """:func:`_twins` and three runs whose run_started never came (only a node's events: no start time), one id
    of them used by two projects; in the listing order, where runs without a start time come last."""
    expected = await _twins(store)
    unstarted = [RunEvents(), RunEvents()]
    projects_of: list[tuple[str | None, ...]] = [(None, "alpha"), (None,)]
    for run, projects in zip(unstarted, projects_of, strict=True):
        run.node("fetch")
        for project in projects:
            await store.append(prepared([{**event, "project": project} for event in run.events], project=project))
    ids = sorted((run.run_id for run in unstarted), reverse=True)
    keys = {run.run_id: projects for run, projects in zip(unstarted, projects_of, strict=True)}
    return [*expected, *((run_id, project) for run_id in ids for project in keys[run_id])]


@pytest.mark.asyncio
@pytest.mark.parametrize("limit", [1, 2, 4])
async def test_the_viewer_pages_into_runs_without_a_start_time_and_back(store: Store, limit: int) -> None:
    """Runs without a start time (their run_started lost) come after every started run, in the viewer's list as
    in GET /api/runs: paging older reaches each of them once, and paging newer from there comes back."""
    expected = await _with_unstarted(store)
    listed = await store.list_runs(RunQuery(limit=50))
    assert [_key(run) for run in listed.runs] == expected
    page = await store.viewer_runs(RunFilter(), limit=limit)
    older = [_key(run) for run in page.runs]
    while page.older is not None:
        page = await store.viewer_runs(RunFilter(), limit=limit, cursor=page.older, direction=PageDirection.OLDER)
        older += [_key(run) for run in page.runs]
        assert len(older) <= len(expected)
    assert older == expected
    position = expected.index(_key(page.runs[0]))  # where the oldest page starts
    while page.newer is not None:
        page = await store.viewer_runs(RunFilter(), limit=limit, cursor=page.newer, direction=PageDirection.NEWER)
        shown = [_key(run) for run in page.runs]
        if page.newer is None:  # the first page, shown whole
            assert shown == expected[:limit]
        else:  # the runs just before the page it came from
            assert shown == expected[position - len(shown) : position]
            position -= len(shown)


@pytest.mark.asyncio
async def test_a_page_and_its_total_agree_while_runs_are_stored(store: Store) -> None:
    """A listing reads its page and its count from one state: while batches of runs are committed beside it, a
    complete page (no next, total not capped) always lists as many runs as its total says."""
    batches = [[e for _ in range(5) for e in RunEvents().start().finish().events] for _ in range(60)]
    done = False

    async def ingest() -> None:
        nonlocal done
        for batch in batches:
            await store.append(prepared(batch))
            await asyncio.sleep(0)
        done = True

    pages = disagreements = 0
    writer = asyncio.ensure_future(ingest())
    while not done:
        page = await store.list_runs(RunQuery(limit=1000))
        if page.next is None and not page.total_capped:
            pages += 1
            disagreements += page.total != len(page.runs)
    await writer
    assert pages > 0
    assert disagreements == 0
