"""Producers are per project, as runs and events are: the same producer id in two projects is two producers.

Project ``beta`` sends first under a producer id; ``alpha`` then uses the same id (a copied configuration,
or on purpose) and sends one event with a huge ``producer_seq``. Each project's figures (``stats``, which
``/metrics`` shows) and coverage count its own events and gaps only, before and after a rebuild.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from flowledger._wire import now_ts
from flowledger.receiver.store._integrity import CoverageKind, CoverageQuery, CoverageReport, CoverageStatus
from flowledger.receiver.store._protocol import EventOutcome, PurgeSelection, Stats, Store
from tests.receiver._support import Producer, RunEvents, simple_run
from tests.receiver.store.conformance.conftest import prepared

pytestmark = pytest.mark.asyncio

_OWNER, _OTHER = "beta", "alpha"
_HUGE_SEQ = 500_000


@dataclass(frozen=True, slots=True)
class _Figures:
    """What one project is shown of its producers."""

    producers: int
    ledger_events: int
    events_lost: int
    producers_with_gaps: int

    @classmethod
    def of(cls, stats: Stats) -> _Figures:
        return cls(stats.producers, stats.ledger_events, stats.events_lost, stats.producers_with_gaps)


async def _append(store: Store, events: list[RunEvents], *, project: str | None) -> None:
    outcomes = await store.append(prepared([e for run in events for e in run.events], project=project))
    assert {outcome for outcome, _ in outcomes} == {EventOutcome.ACCEPTED}


async def _coverage(store: Store, project: str | None) -> CoverageReport:
    return await store.coverage(CoverageQuery(now=now_ts(), stuck_after_s=300, project=project))


async def test_a_producer_id_used_in_two_projects_counts_and_gaps_apart(store: Store) -> None:
    """beta sends 12 events under a producer id, alpha 4 and then one with producer_seq 500000 under the same
    id: each project's stats and coverage count its own events only, alpha's gap never shows in beta's, and a
    rebuild gives the same answers."""
    owner = Producer()
    owner_runs = [simple_run(owner, project=_OWNER) for _ in range(3)]
    await _append(store, owner_runs, project=_OWNER)
    other = Producer(producer_id=owner.producer_id)
    other_run = simple_run(other, project=_OTHER)
    await _append(store, [other_run], project=_OTHER)

    for _ in range(2):  # before and after a rebuild
        assert _Figures.of(await store.stats(project=_OWNER)) == _Figures(1, 12, 0, 0)
        assert _Figures.of(await store.stats(project=_OTHER)) == _Figures(1, 4, 0, 0)
        assert _Figures.of(await store.stats()) == _Figures(2, 16, 0, 0)
        for project in (_OWNER, _OTHER, None):
            assert (await _coverage(store, project)).status is CoverageStatus.PASS
        await store.rebuild()

    other.seq = _HUGE_SEQ
    other_run.heartbeat()  # alpha's fifth event, numbered 500000 by the shared producer id
    outcomes = await store.append(prepared(other_run.events[-1:], project=_OTHER))
    assert [outcome for outcome, _ in outcomes] == [EventOutcome.ACCEPTED]

    for _ in range(2):
        assert _Figures.of(await store.stats(project=_OWNER)) == _Figures(1, 12, 0, 0)
        assert _Figures.of(await store.stats(project=_OTHER)) == _Figures(1, 5, 5, 1)
        assert _Figures.of(await store.stats()) == _Figures(2, 17, 5, 1)
        mine = await _coverage(store, _OWNER)
        assert mine.status is CoverageStatus.PASS
        assert (mine.sessions_with_gaps, mine.events_missing) == (0, 0)
        theirs = await _coverage(store, _OTHER)
        assert theirs.status is CoverageStatus.FAIL_CORE_MISSING
        assert (theirs.sessions_with_gaps, theirs.events_missing) == (1, 5)
        [sample] = theirs.kinds[CoverageKind.PRODUCER_SEQ_GAP].samples
        assert (sample["producer_id"], sample["events"], sample["max_seq"]) == (owner.producer_id, 5, _HUGE_SEQ)
        assert sample["last_run_id"] == other_run.run_id
        everyone = await _coverage(store, None)
        assert (everyone.sessions_with_gaps, everyone.events_missing) == (1, 5)
        await store.rebuild()


async def test_one_batch_with_a_producer_id_in_two_namespaces_makes_two_producers(store: Store) -> None:
    """Events without a project and events of alpha under one producer id, in one batch: two producers, each
    counting its own events and newest run, the one without a project never shown to alpha."""
    shared = Producer()
    plain = simple_run(shared)
    scoped = simple_run(Producer(producer_id=shared.producer_id), project=_OTHER)
    scoped.heartbeat()
    await _append(store, [plain, scoped], project=None)

    for _ in range(2):
        assert _Figures.of(await store.stats()) == _Figures(2, 9, 0, 0)
        assert _Figures.of(await store.stats(project=_OTHER)) == _Figures(1, 5, 0, 0)
        assert (await _coverage(store, _OTHER)).status is CoverageStatus.PASS
        await store.rebuild()


async def test_a_purged_runs_events_still_count_for_their_producer_after_a_rebuild(store: Store) -> None:
    """A purge keeps the entries (their producer ids and numbers) and drops the payloads: coverage passes after
    it, and after a rebuild, which refolds the producers from the entries of purged events too."""
    producer = Producer()
    runs = [simple_run(producer, project=_OWNER) for _ in range(3)]
    await _append(store, runs, project=_OWNER)
    await store.purge(PurgeSelection(run_ids=(runs[1].run_id,), project=_OWNER, by="test"))
    for _ in range(2):  # before and after a rebuild
        assert _Figures.of(await store.stats(project=_OWNER)) == _Figures(1, 12, 0, 0)
        report = await _coverage(store, _OWNER)
        assert report.status is CoverageStatus.PASS, report
        await store.rebuild()
