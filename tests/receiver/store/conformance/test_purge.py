"""The Store conformance suite, purges: payloads and projections go, the chain and the daily totals stay."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from flowledger.receiver.store._protocol import DailyTotal, EventOutcome, PurgeSelection, RunQuery, Store
from tests.receiver._support import RunEvents, simple_run, typical_run
from tests.receiver.store.conformance.conftest import prepared

pytestmark = pytest.mark.asyncio


async def _append(store: Store, *runs: RunEvents) -> None:
    outcomes = await store.append(prepared([e for run in runs for e in run.events]))
    assert {outcome for outcome, _ in outcomes} == {EventOutcome.ACCEPTED}


def _totals(rows: Sequence[DailyTotal]) -> dict[tuple[str, str], tuple[int, float]]:
    """Runs and cost (rounded to a nano-dollar) per workflow and status."""
    out: dict[tuple[str, str], tuple[int, float]] = {}
    for row in rows:
        runs, cost = out.get((row.workflow_id, row.status), (0, 0.0))
        out[(row.workflow_id, row.status)] = (runs + row.runs, round(cost + row.cost_usd, 9))
    return out


async def test_purge_one_run_erases_it_and_records_the_purge(store: Store) -> None:
    """A purged run is gone from every query; verify passes and counts the purge and the erased payloads."""
    keep, gone = simple_run(), typical_run()
    await _append(store, keep, gone)
    report = await store.purge(PurgeSelection(run_ids=(gone.run_id,), by="cli"))
    assert report.runs == [gone.run_id]
    assert report.events == len(gone.events)
    assert report.purge_seq == len(keep.events) + len(gone.events) + 1
    assert await store.get_run(gone.run_id) is None
    assert await store.run_header(gone.run_id, project=None) is None
    assert await store.get_run(keep.run_id) is not None
    assert (await store.list_runs(RunQuery())).total == 1
    verdict = await store.verify()
    assert verdict.ok, verdict
    assert (verdict.purges, verdict.runs_purged, verdict.payloads_erased) == (1, 1, len(gone.events))
    assert verdict.events == report.purge_seq


async def test_purge_of_nothing_writes_no_entry(store: Store) -> None:
    """Purging an unknown run erases nothing and appends nothing."""
    run = simple_run()
    await _append(store, run)
    report = await store.purge(PurgeSelection(run_ids=("no-such-run",), by="cli"))
    assert report.runs == []
    assert report.purge_seq is None
    assert (await store.verify()).events == len(run.events)


async def test_purge_is_scoped_to_a_project(store: Store) -> None:
    """A purge scoped to one project leaves another project's run alone."""
    ours, theirs = simple_run(project="alpha"), simple_run(project="beta")
    await _append(store, ours, theirs)
    report = await store.purge(PurgeSelection(run_ids=(ours.run_id, theirs.run_id), project="alpha", by="key"))
    assert report.runs == [ours.run_id]
    assert await store.get_run(theirs.run_id) is not None


async def test_verify_counts_a_run_id_purged_in_two_projects_as_two_runs(store: Store) -> None:
    """A run is its project and its id: one id purged in each of two projects is two runs purged."""
    ours, theirs = RunEvents(project="alpha"), RunEvents(project="beta")
    theirs.run_id = ours.run_id
    await _append(store, ours.start().node("fetch").finish(), theirs.start().node("fetch").finish())
    for project in ("alpha", "beta"):
        report = await store.purge(PurgeSelection(run_ids=(ours.run_id,), project=project, by="key"))
        assert report.runs == [ours.run_id]
    verdict = await store.verify()
    assert verdict.ok, verdict
    assert (verdict.purges, verdict.runs_purged) == (2, 2)


async def test_purge_by_workflow_before_a_time_and_keep_newest(store: Store) -> None:
    """A workflow's runs started before a time are purged; keep_newest spares the newest; others stay."""
    runs = [simple_run(workflow_id="w") for _ in range(4)]
    other = simple_run(workflow_id="other")
    await _append(store, *runs, other)
    by_start = sorted(runs, key=lambda r: r.started_at)
    kept = await store.purge(PurgeSelection(workflow_id="w", keep_newest=3, by="retention"))
    assert kept.runs == [by_start[0].run_id]
    before = await store.purge(PurgeSelection(workflow_id="w", before=by_start[2].started_at, by="cli"))
    assert before.runs == [by_start[1].run_id]
    everything = await store.purge(PurgeSelection(workflow_id="w", by="cli"))
    assert sorted(everything.runs) == sorted(r.run_id for r in by_start[2:])
    assert (await store.list_runs(RunQuery())).total == 1
    assert (await store.verify()).ok


async def test_purge_spares_running_runs_when_asked_and_is_bounded(store: Store) -> None:
    """finished_only spares live runs; limit bounds one purge to the oldest N runs."""
    running = RunEvents(workflow_id="w").start()
    done = [simple_run(workflow_id="w") for _ in range(3)]
    await _append(store, running, *done)
    first = await store.purge(PurgeSelection(workflow_id="w", finished_only=True, limit=2, by="retention"))
    assert len(first.runs) == 2
    rest = await store.purge(PurgeSelection(workflow_id="w", finished_only=True, by="retention"))
    assert len(rest.runs) == 1
    assert await store.get_run(running.run_id) is not None


async def test_daily_totals_survive_a_purge(store: Store) -> None:
    """Counts and costs per workflow, day and status are the same before and after the runs are purged."""
    runs = [typical_run(workflow_id="w"), simple_run(workflow_id="w"), simple_run(workflow_id="v")]
    await _append(store, *runs)
    before = await store.daily_totals()
    assert _totals(before) == {
        ("v", "succeeded"): (1, 0.004),
        ("w", "failed"): (1, 0.004),
        ("w", "succeeded"): (1, 0.004),
    }
    await store.purge(PurgeSelection(workflow_id="w", by="cli"))
    after = await store.daily_totals()
    assert _totals(after) == _totals(before)
    assert [t.day for t in after] == [t.day for t in before]
    assert _totals(await store.daily_totals(workflow_id="v")) == {("v", "succeeded"): (1, 0.004)}


async def test_a_purged_run_stays_purged(store: Store) -> None:
    """Events of a purged run sent again are duplicates, and a rebuild does not bring the run back."""
    run = typical_run()
    await _append(store, run)
    await store.purge(PurgeSelection(run_ids=(run.run_id,), by="cli"))
    again = await store.append(prepared(run.events))
    assert {outcome for outcome, _ in again} == {EventOutcome.DUPLICATE}
    drift = await store.rebuild()
    assert drift.clean
    assert await store.get_run(run.run_id) is None
    assert (await store.verify()).ok


async def test_purge_removes_the_runs_spans(store: Store) -> None:
    """Span attributes go with the run whose trace they belong to."""
    from tests.receiver.store.conformance.test_conformance import _span

    run = simple_run()
    await _append(store, run)
    await store.store_spans([_span(run, "a" * 16, parent=None, name="root", start_ns=1)])
    assert (await store.get_trace(run.trace_id))[0]
    await store.purge(PurgeSelection(run_ids=(run.run_id,), by="cli"))
    assert (await store.get_trace(run.trace_id))[0] == []


async def test_purge_keeps_another_projects_spans_of_the_same_trace(store: Store) -> None:
    """Spans are kept per project: purging a run erases its project's spans, not another project's of its trace."""
    import dataclasses

    from tests.receiver.store.conformance.test_conformance import _span

    run = simple_run(project="alpha")
    await _append(store, run)
    ours = dataclasses.replace(_span(run, "a" * 16, parent=None, name="root", start_ns=1), project="alpha")
    theirs = dataclasses.replace(ours, project="beta", name="theirs")
    await store.store_spans([ours, theirs])
    await store.purge(PurgeSelection(run_ids=(run.run_id,), by="cli", project="alpha"))
    assert (await store.get_trace(run.trace_id, project="alpha"))[0] == []
    assert [span["name"] for span in (await store.get_trace(run.trace_id, project="beta"))[0]] == ["theirs"]
