"""The Store conformance suite, integrity: coverage of missing core events and reconciliation against the fold.

Written against the protocol only; hand edits of a projection are engine-specific and live in the CLI tests.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from flowledger._wire import format_ts, now_ts
from flowledger.receiver.store._integrity import (
    CoverageKind,
    CoverageQuery,
    CoverageStatus,
    DriftKind,
    ReconcileScope,
)
from flowledger.receiver.store._protocol import EventOutcome, PurgeSelection, Store
from flowledger.receiver.store._time import ts_from_epoch_s
from tests.receiver._support import RunEvents, simple_run, typical_run
from tests.receiver.store.conformance.conftest import prepared

pytestmark = pytest.mark.asyncio

_FAR_FUTURE = format_ts(4_000_000_000 * 1_000_000_000)


async def _append(store: Store, events: list[dict[str, Any]], *, project: str | None = None) -> None:
    outcomes = await store.append(prepared(events, project=project))
    assert {outcome for outcome, _ in outcomes} == {EventOutcome.ACCEPTED}


def _counts(tallies: dict[Any, Any]) -> dict[str, int]:
    return {str(kind): tally.count for kind, tally in tallies.items()}


async def test_reconcile_is_clean_after_ingest_in_any_order(store: Store) -> None:
    """Runs delivered backwards, one event per batch, fold to what a fresh fold of the ledger gives."""
    runs = [typical_run(), simple_run(), RunEvents().start().node("fetch")]
    for event in reversed([e for run in runs for e in run.events]):
        await _append(store, [event])
    report = await store.reconcile(ReconcileScope.everything())
    assert report.clean, report.as_json()
    assert report.runs_checked == 3
    assert report.events_folded == sum(len(run.events) for run in runs)
    assert report.repaired == 0


async def test_runs_dropped_by_sampling_are_not_drift(store: Store) -> None:
    """A run_sampled_out entry is a count, never a run: reconciling its run id finds nothing missing."""
    dropped = RunEvents()
    dropped._event("run_sampled_out", {"workflow_id": dropped.workflow_id, "runs": 1})
    await _append(store, [*dropped.events, *simple_run().events])
    report = await store.reconcile(ReconcileScope.everything())
    assert report.clean, report.as_json()


async def test_a_sweep_in_slices_checks_every_run_once(store: Store) -> None:
    """Slices of two runs, each starting where the previous stopped, cover all five runs and then end."""
    runs = [simple_run() for _ in range(5)]
    await _append(store, [e for run in runs for e in run.events])
    checked, start, slices = 0, "", 0
    while True:
        report = await store.reconcile(ReconcileScope(sweep_from=start, sweep_runs=2))
        checked += report.runs_checked
        slices += 1
        if report.sweep_next is None:
            break
        start = report.sweep_next
    assert (checked, slices) == (5, 3)


async def test_named_runs_and_recent_entries_are_checked(store: Store) -> None:
    """A scope of named runs checks those; one of recent entries checks the runs appended after a ledger position."""
    old, new = simple_run(), simple_run()
    await _append(store, old.events)
    before = await store.reconcile(ReconcileScope(run_ids=(old.run_id,)))
    assert (before.runs_checked, before.ledger_seq) == (1, len(old.events))
    await _append(store, new.events)
    recent = await store.reconcile(ReconcileScope(recent_after_seq=before.ledger_seq, recent_max_events=100))
    assert recent.runs_checked == 1
    assert recent.ledger_seq == len(old.events) + len(new.events)
    unknown = await store.reconcile(ReconcileScope(run_ids=("never-stored",)))
    assert (unknown.runs_checked, unknown.clean) == (0, True)


async def test_purged_and_stuck_runs_are_not_drift(store: Store) -> None:
    """A purged run and a run the sweeper marked stuck are not drift, and repair changes nothing."""
    purged, silent = simple_run(), RunEvents().start().node("fetch")
    await _append(store, [*purged.events, *silent.events])
    await store.purge(PurgeSelection(run_ids=(purged.run_id,), by="test"))
    assert await store.sweep(now=_FAR_FUTURE, stuck_after_s=60.0, heartbeats=3) == [silent.run_id]
    report = await store.reconcile(ReconcileScope.everything(), repair=True)
    assert report.clean, report.as_json()
    assert (report.runs_checked, report.repaired) == (1, 0)
    assert (await store.get_run(silent.run_id) or {})["status"] == "stuck"
    assert await store.get_run(purged.run_id) is None


async def test_reconcile_is_scoped_to_a_project(store: Store) -> None:
    """With a project, only that project's runs are checked."""
    await _append(store, simple_run(project="alpha").events, project="alpha")
    await _append(store, simple_run(project="beta").events, project="beta")
    report = await store.reconcile(ReconcileScope.everything(project="alpha"))
    assert report.runs_checked == 1
    assert set(_counts(report.kinds)) == {kind.value for kind in DriftKind}


async def test_coverage_passes_on_complete_runs_and_names_what_is_missing(store: Store) -> None:
    """Complete runs: PASS. A run left running, an attempt never finished, a producer gap and a run without
    run_started: each kind counted once."""
    await _append(store, [e for run in (typical_run(), simple_run()) for e in run.events])
    clean = await store.coverage(CoverageQuery(now=now_ts(), stuck_after_s=300))
    assert clean.status is CoverageStatus.PASS
    assert clean.sessions_with_gaps == 0

    unfinished = RunEvents(workflow_id="wa").start().node("fetch")
    node_open = RunEvents().start().node("fetch").finish()
    del node_open.events[2]  # its node_finished
    gap = RunEvents().start().node("fetch").heartbeat().finish()
    del gap.events[3]  # its heartbeat: producer_seq 3 never arrives
    no_start = RunEvents().start().node("fetch").finish()
    del no_start.events[0]
    for run in (node_open, no_start):
        for number, event in enumerate(run.events):
            event["producer_seq"] = number
    await _append(store, [e for run in (unfinished, node_open, gap, no_start) for e in run.events])
    # An hour on: silent by the producer's clock and by the receiver's (which stored the events just now).
    later = ts_from_epoch_s(time.time() + 3600)
    report = await store.coverage(CoverageQuery(now=later, stuck_after_s=300))
    assert report.status is CoverageStatus.FAIL_CORE_MISSING
    assert _counts(report.kinds) == {kind.value: 1 for kind in CoverageKind}
    assert (report.sessions_with_gaps, report.events_missing) == (1, 1)
    assert report.kinds[CoverageKind.RUN_FINISHED_MISSING].samples[0]["run_id"] == unfinished.run_id
    assert report.kinds[CoverageKind.NODE_FINISHED_MISSING].samples[0]["run_id"] == node_open.run_id
    assert report.kinds[CoverageKind.RUN_STARTED_MISSING].samples[0]["run_id"] == no_start.run_id
    assert report.kinds[CoverageKind.PRODUCER_SEQ_GAP].samples[0]["producer_id"] == gap.producer.producer_id
    assert (await store.coverage(CoverageQuery(now=now_ts(), stuck_after_s=300))).kinds[
        CoverageKind.RUN_FINISHED_MISSING
    ].count == 0, "heard from by the receiver just now: not silent yet"
    only_wa = await store.coverage(CoverageQuery(now=later, stuck_after_s=300, workflow_id="wa"))
    expected = {kind.value: int(kind is CoverageKind.RUN_FINISHED_MISSING) for kind in CoverageKind}
    assert _counts(only_wa.kinds) == expected
    other_project = await store.coverage(CoverageQuery(now=later, stuck_after_s=300, project="nobody"))
    assert other_project.status is CoverageStatus.PASS
