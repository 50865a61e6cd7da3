"""The Store conformance suite, edges the viewer and the API must agree on: attempts shorter than the ledger's
time precision still ran, and a run-id search is case-insensitive everywhere."""

from __future__ import annotations

import pytest

from flowledger.receiver.store._protocol import RunQuery, Store
from flowledger.receiver.store._views import RunFilter
from tests.receiver._support import RunEvents
from tests.receiver.store.conformance.conftest import prepared

pytestmark = pytest.mark.asyncio

_INSTANT_MS = (0.0, 0.0, 0.0)
"""Attempts' durations: none measurable (an attempt under the millisecond SQLite reads times at looks so)."""


async def test_attempts_shorter_than_a_millisecond_count_as_running(store: Store) -> None:
    """Sequential attempts of no measurable length: the peak is one at once, and the strip shows them."""
    run = RunEvents().start().node("fetch").node("price").node("ship").finish()
    finished = [event for event in run.events if event["kind"] == "node_finished"]
    for event, duration_ms in zip(finished, _INSTANT_MS, strict=True):
        event["data"]["duration_ms"] = duration_ms
    await store.append(prepared(run.events))
    header = await store.run_header(run.run_id, project=None)
    assert header is not None
    overview = header["attempts"]
    assert overview["max_concurrency"] == 1
    assert sum(1 for level in overview["concurrency"] if level) >= 3


async def test_a_run_id_search_ignores_case_in_the_api_and_the_viewer(store: Store) -> None:
    """The start of a run id typed in capitals finds the run through list_runs as through viewer_runs."""
    run = RunEvents().start().node("fetch").finish()
    other = RunEvents().start().node("fetch").finish()
    await store.append(prepared(run.events + other.events))
    typed = run.run_id[:28].upper()  # past the time bits the two ids share
    listed = await store.list_runs(RunQuery(search=f" {typed} "))
    assert [r["run_id"] for r in listed.runs] == [run.run_id]
    lowered = await store.list_runs(RunQuery(search=typed.lower()))
    assert [r["run_id"] for r in lowered.runs] == [run.run_id]
    viewed = await store.viewer_runs(RunFilter(text=typed, run_id_prefix=typed.lower()), limit=10)
    assert [r["run_id"] for r in viewed.runs] == [run.run_id]
