"""Run and event ids are per project: another project's use of an id hides, blocks and reveals nothing.

Project ``beta`` learns ``alpha``'s run id (from propagated trace context, say) and event ids, and
sends events under them first; ``alpha``'s own events then arrive. Through the ``Store`` protocol and
over a real socket with API keys on, for every engine.
"""

from __future__ import annotations

import contextlib
import copy
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from flowledger._exceptions import AmbiguousRunError
from flowledger.receiver._config import ReceiverConfig
from flowledger.receiver.store._error_groups import ErrorGroupQuery
from flowledger.receiver.store._integrity import ReconcileScope
from flowledger.receiver.store._protocol import EventOutcome, PurgeSelection, RunQuery, Store
from flowledger.receiver.store._stats import StatsBy, StatsQuery
from tests.receiver._support import LiveReceiver, RunEvents, typical_run
from tests.receiver.store.conformance.conftest import bearer, keyed_receiver, prepared

_OWNER, _SQUATTER = "alpha", "beta"


def _squatted(owner: RunEvents) -> list[dict[str, Any]]:
    """``owner``'s events under the same run id and event ids, changed, in another project."""
    events = copy.deepcopy(owner.events)
    for event in events:
        event["project"] = _SQUATTER
        event["data"]["workflow_id"] = "squatter"
        if event["kind"] == "run_finished":
            event["data"].update(status="succeeded", output={"decision": "squat"})
            event["data"].pop("error", None)
    return [*events[:3], events[-1]]  # run_started, a node, run_finished: fewer attempts than the owner's


@pytest.mark.asyncio
async def test_an_id_used_first_by_another_project_hides_nothing(store: Store) -> None:
    """beta squats alpha's run id and event ids first: alpha's run folds completely, beta's is a run of its own,
    reads by one project never show the other's, both stay after a rebuild, and purging alpha's keeps beta's."""
    owner = typical_run(project=_OWNER)
    squat = _squatted(owner)
    first = await store.append(prepared(squat, project=_SQUATTER))
    assert [outcome for outcome, _ in first] == [EventOutcome.ACCEPTED] * len(squat)
    later = await store.append(prepared(owner.events, project=_OWNER))
    assert [outcome for outcome, _ in later] == [EventOutcome.ACCEPTED] * len(owner.events)
    again = await store.append(prepared(owner.events, project=_OWNER))
    assert {outcome for outcome, _ in again} == {EventOutcome.DUPLICATE}

    mine = await store.get_run(owner.run_id, project=_OWNER)
    theirs = await store.get_run(owner.run_id, project=_SQUATTER)
    assert mine is not None
    assert theirs is not None
    assert (mine["status"], mine["workflow_id"], mine["project"]) == ("failed", "order-intake", _OWNER)
    assert len(mine["nodes"]) == 6
    assert mine["output"] == {"decision": "ship"}
    assert (theirs["status"], theirs["workflow_id"], theirs["project"]) == ("succeeded", "squatter", _SQUATTER)
    assert len(theirs["nodes"]) == 1
    header = await store.run_header(owner.run_id, project=_OWNER)
    assert header is not None
    assert header["attempts"]["total"] == 6
    page = await store.attempts_page(owner.run_id, project=_SQUATTER, offset=0, limit=50)
    assert page is not None
    assert page["total"] == 1

    listed = await store.list_runs(RunQuery())
    assert sorted(run["project"] for run in listed.runs if run["run_id"] == owner.run_id) == [_OWNER, _SQUATTER]
    assert [run["project"] for run in (await store.list_runs(RunQuery(project=_SQUATTER))).runs] == [_SQUATTER]
    with pytest.raises(AmbiguousRunError, match="more than one project"):
        await store.get_run(owner.run_id)
    assert (await store.stats()).ledger_events == len(squat) + len(owner.events)
    assert (await store.verify()).ok

    drift = await store.rebuild()
    assert drift.clean, drift.as_json()
    assert await store.get_run(owner.run_id, project=_OWNER) == mine

    report = await store.purge(PurgeSelection(run_ids=(owner.run_id,), project=_OWNER, by="test"))
    assert report.runs == [owner.run_id]
    assert report.events == len(owner.events)
    assert await store.get_run(owner.run_id, project=_OWNER) is None
    kept = await store.get_run(owner.run_id)  # one project's run left: no ambiguity
    assert kept == theirs
    assert (await store.verify()).ok


@pytest.mark.asyncio
async def test_another_projects_run_looks_like_no_run(store: Store) -> None:
    """To beta, alpha's run id is as unknown as an id nobody used: the same outcomes and the same empty reads."""
    owner = typical_run(project=_OWNER)
    await store.append(prepared(owner.events, project=_OWNER))
    unused = RunEvents().run_id

    def beta_heartbeat(run_id: str) -> dict[str, Any]:
        probe = RunEvents(project=_SQUATTER).heartbeat()
        probe.events[0]["run_id"] = run_id
        return probe.events[0]

    taken = await store.append(prepared([beta_heartbeat(owner.run_id)], project=_SQUATTER))
    fresh = await store.append(prepared([beta_heartbeat(unused)], project=_SQUATTER))
    assert taken == fresh == [(EventOutcome.ACCEPTED, None)]
    reused = {**owner.events[1], "project": _SQUATTER, "run_id": RunEvents().run_id}  # an event id alpha stored
    assert await store.append(prepared([reused], project=_SQUATTER)) == [(EventOutcome.ACCEPTED, None)]
    for run_id in (owner.run_id, unused):
        seen = await store.get_run(run_id, project=_SQUATTER)
        assert seen is not None
        assert (seen["nodes"], seen["status"]) == ([], "running")
        assert await store.run_payload(run_id, "input", project=_SQUATTER) is None  # type: ignore[arg-type]
        assert await store.resume_evidence(run_id, project=_SQUATTER) is not None
    mine = await store.get_run(owner.run_id, project=_OWNER)
    assert mine is not None
    assert (mine["status"], len(mine["nodes"])) == ("failed", 6)


_KEYS = {"token-alpha-0123": _OWNER, "token-beta-4567": _SQUATTER}


@pytest.fixture
def keyed(engine_kind: str, receiver_config: ReceiverConfig, request: pytest.FixtureRequest) -> Iterator[LiveReceiver]:
    """A receiver with one API key per project, on the engine under test."""
    with keyed_receiver(_KEYS, engine_kind, receiver_config, request) as receiver:
        yield receiver


def _as(project: str) -> dict[str, str]:
    return bearer(_KEYS, project)


def test_squatting_over_http_with_api_keys(keyed: LiveReceiver) -> None:
    """Over a real socket with keys on: beta's squatting is accepted as beta's own run, alpha's events are all
    accepted and fold into alpha's run, and beta's answers are the same as for an id nobody used."""
    owner = typical_run()
    squat = _squatted(owner)
    for event in squat:
        event["project"] = None  # the key says which project
    assert keyed.post(squat, headers=_as(_SQUATTER)).json()["accepted"] == len(squat)
    answer = keyed.post(owner.events, headers=_as(_OWNER)).json()
    assert (answer["accepted"], answer["rejected"]) == (len(owner.events), [])
    mine = keyed.get(f"/api/runs/{owner.run_id}", headers=_as(_OWNER)).json()
    assert (mine["status"], mine["project"], len(mine["nodes"])) == ("failed", _OWNER, 6)
    theirs = keyed.get(f"/api/runs/{owner.run_id}", headers=_as(_SQUATTER)).json()
    assert (theirs["status"], theirs["project"], len(theirs["nodes"])) == ("succeeded", _SQUATTER, 1)
    alone = typical_run()
    keyed.post(alone.events, headers=_as(_OWNER))
    unused = RunEvents().run_id
    for path in ("/api/runs/{}", "/api/viewer/runs/{}", "/api/runs/{}/outputs", "/api/runs/{}/chain"):
        hidden = keyed.get(path.format(alone.run_id), headers=_as(_SQUATTER))
        nobody = keyed.get(path.format(unused), headers=_as(_SQUATTER))
        assert hidden.status_code == nobody.status_code == 404, path
        assert hidden.json()["error"].replace(alone.run_id, "ID") == nobody.json()["error"].replace(unused, "ID")
    listed = keyed.get("/api/runs", headers=_as(_SQUATTER)).json()
    assert [run["run_id"] for run in listed["runs"]] == [owner.run_id]
    assert httpx.get(f"{keyed.url}/api/verify", headers=_as(_OWNER), timeout=30).json()["ok"] is True


async def _by_hand(engine_kind: str, request: pytest.FixtureRequest, tmp_path: Path, sql: str, *params: Any) -> None:
    """Run one statement on the database by hand (``?`` parameters), as an owner of the database could."""
    if engine_kind == "postgres":
        import asyncpg

        from flowledger.receiver.store.postgres._dialect import numbered

        conn = await asyncpg.connect(request.getfixturevalue("postgres_url"))
        try:
            await conn.execute(numbered(sql), *params)
        finally:
            await conn.close()
        return
    with contextlib.closing(sqlite3.connect(tmp_path / "conformance.db")) as db, db:
        db.execute(sql, params)


async def _delete_payload(engine_kind: str, request: pytest.FixtureRequest, tmp_path: Path, seq: int) -> None:
    """Delete one payload row by hand, as an owner of the database could."""
    await _by_hand(engine_kind, request, tmp_path, "DELETE FROM payloads WHERE seq = ?", seq)


@pytest.mark.asyncio
async def test_a_purge_of_one_projects_run_explains_no_other_projects_erased_payload(
    store: Store, engine_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """verify: a payload gone from beta's run is not covered by the purge of alpha's run of the same id."""
    owner = typical_run(project=_OWNER)
    squat = _squatted(owner)
    await store.append(prepared(squat, project=_SQUATTER))
    await store.append(prepared(owner.events, project=_OWNER))
    await store.purge(PurgeSelection(run_ids=(owner.run_id,), project=_OWNER, by="test"))
    assert (await store.verify()).ok
    entries = await store.run_proof(owner.run_id, (await store.tree_head()).size, project=_SQUATTER)
    await _delete_payload(engine_kind, request, tmp_path, entries[0].seq)
    report = await store.verify()
    assert not report.ok
    assert f"no purge entry covers run {owner.run_id}" in (report.problem or "")


def _failing(project: str | None, node_id: str, region: str, word: str, run_id: str | None = None) -> RunEvents:
    """A run of ``project`` failing at ``node_id``, started with attribute region=``region``, logging ``word``."""
    run = RunEvents(project=project)
    if run_id is not None:
        run.run_id = run_id
    run.start(attributes={"region": region}).node(node_id, status="failed")
    run.logs(node_id, [f"{word} went wrong"])
    return run.finish("failed", error_node=node_id)


async def _found(store: Store, text: str | None = None, **query: Any) -> set[tuple[str, str | None]]:
    page = await store.list_runs(RunQuery(search=text, **query))
    return {(run["run_id"], run["project"]) for run in page.runs}


async def _analytics(store: Store) -> tuple[Any, ...]:
    return (
        {p: await store.error_groups(ErrorGroupQuery(project=p)) for p in (_OWNER, _SQUATTER)},
        {p: await store.run_stats(StatsQuery(by=StatsBy.NODE, project=p)) for p in (_OWNER, _SQUATTER)},
        await store.run_stats(StatsQuery(by=StatsBy.PROJECT)),
    )


@pytest.mark.asyncio
async def test_search_error_groups_and_statistics_see_each_projects_run_of_one_id(store: Store) -> None:
    """Two projects' runs of one id, failing at the same node: search, attribute filters, error groups and
    statistics keep them apart (a batch folding into both), through a rebuild (which takes each stored attempt
    out of its own project's sums only: an earlier purged run of alpha's keeps counting) and a purge of one."""
    earlier = _failing(_OWNER, "charge", "eu", "earlierword")
    await store.append(prepared(earlier.events))
    await store.purge(PurgeSelection(run_ids=(earlier.run_id,), project=_OWNER, by="test"))
    owner = _failing(_OWNER, "charge", "eu", "alphaword")
    squat = _failing(_SQUATTER, "charge", "us", "betaword", run_id=owner.run_id)
    await store.append(prepared(squat.events[:-1]))
    await store.append(prepared([*owner.events, squat.events[-1]]))  # one batch folds into both runs

    both = {(owner.run_id, _OWNER), (owner.run_id, _SQUATTER)}
    assert await _found(store, "alphaword") == {(owner.run_id, _OWNER)}
    assert await _found(store, "betaword") == {(owner.run_id, _SQUATTER)}
    assert await _found(store, "alphaword", project=_SQUATTER) == set()
    assert await _found(store, "went wrong") == both
    assert await _found(store, attributes=(("region", "us"),)) == {(owner.run_id, _SQUATTER)}
    assert await _found(store, "alphaword", attributes=(("region", "us"),)) == set()

    groups, nodes, projects = before = await _analytics(store)
    assert [(g["count"], g["sample_run_ids"]) for g in groups[_OWNER]] == [(2, [owner.run_id])]  # earlier's counts
    assert [(g["count"], g["sample_run_ids"]) for g in groups[_SQUATTER]] == [(1, [owner.run_id])]
    assert [(g["key"], g["runs"]) for g in nodes[_OWNER]] == [("order-intake/charge", 2)]
    assert [(g["key"], g["runs"]) for g in nodes[_SQUATTER]] == [("order-intake/charge", 1)]
    assert sorted((g["key"], g["runs"], g["by_status"]) for g in projects) == [
        (_OWNER, 2, {"failed": 2}),
        (_SQUATTER, 1, {"failed": 1}),
    ]
    assert (await store.rebuild()).clean
    assert await _analytics(store) == before
    assert await _found(store, "went wrong") == both

    await store.purge(PurgeSelection(run_ids=(owner.run_id,), project=_OWNER, by="test"))
    assert await _found(store, "went wrong") == {(owner.run_id, _SQUATTER)}
    assert await _found(store, attributes=(("region", "eu"),)) == set()
    groups = {p: await store.error_groups(ErrorGroupQuery(project=p)) for p in (_OWNER, _SQUATTER)}
    assert [(g["count"], g["sample_run_ids"]) for g in groups[_OWNER]] == [(2, [])]  # purged runs leave the samples
    assert [(g["count"], g["sample_run_ids"]) for g in groups[_SQUATTER]] == [(1, [owner.run_id])]


@pytest.mark.asyncio
async def test_a_readers_own_run_is_found_however_many_projects_use_its_id(store: Store) -> None:
    """Four projects use one run id: each reader bound to a project reads its own run, never a 404."""
    owner = typical_run(project=_OWNER)
    projects = [_OWNER, _SQUATTER, "gamma", "delta"]
    for project in projects:
        await store.append(prepared([{**e, "project": project} for e in owner.events], project=project))
    for project in projects:
        run = await store.get_run(owner.run_id, project=project)
        assert run is not None, project
        assert run["project"] == project
        assert await store.run_header(owner.run_id, project=project) is not None, project


@pytest.mark.asyncio
async def test_the_empty_project_names_the_run_without_one(store: Store) -> None:
    """A run id used by alpha and by a run without a project: the namespace '' reads the latter (a reader
    without a project is refused: the id is ambiguous), ``alpha`` the former; its evidence names each project."""
    owner = typical_run(project=_OWNER)
    await store.append(prepared(owner.events, project=_OWNER))
    await store.append(prepared([{k: v for k, v in e.items() if k != "project"} for e in owner.events], project=None))
    with pytest.raises(AmbiguousRunError):
        await store.get_run(owner.run_id)
    for project, stored in ((_OWNER, _OWNER), ("", None)):
        run = await store.get_run(owner.run_id, project=project)
        assert run is not None, project
        assert run["project"] == stored, project
        evidence = await store.resume_evidence(owner.run_id, project=project)
        assert evidence is not None, project
        assert evidence["run"]["project"] == stored, project


@pytest.mark.asyncio
async def test_a_purge_by_run_id_without_a_project_refuses_an_id_of_several_projects(store: Store) -> None:
    """Without a project, a purge of a run id two projects use is refused (as a read of it is), and nothing is
    erased; with the project, only that project's run goes."""
    owner = typical_run(project=_OWNER)
    await store.append(prepared(_squatted(owner), project=_SQUATTER))
    await store.append(prepared(owner.events, project=_OWNER))
    with pytest.raises(AmbiguousRunError, match="more than one project"):
        await store.purge(PurgeSelection(run_ids=(owner.run_id,), by="test"))
    assert await store.get_run(owner.run_id, project=_OWNER) is not None
    assert await store.get_run(owner.run_id, project=_SQUATTER) is not None
    report = await store.purge(PurgeSelection(run_ids=(owner.run_id,), project=_SQUATTER, by="test"))
    assert report.runs == [owner.run_id]
    assert await store.get_run(owner.run_id, project=_SQUATTER) is None
    assert await store.get_run(owner.run_id, project=_OWNER) is not None
    assert (await store.verify()).ok


_LONG_AGO: Final = "2999-01-01T00:00:00.000000Z"


@pytest.mark.asyncio
async def test_repairing_one_projects_run_leaves_another_projects_run_of_that_id(
    store: Store, engine_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """alpha's run drifted (an attempt's row deleted by hand); beta's run of the same id was marked stuck by the
    sweeper. A repair scoped to alpha restores alpha's attempt and leaves beta's run stuck, as it was."""
    owner = typical_run(project=_OWNER)
    silent = RunEvents(project=_SQUATTER).start().node("fetch")
    silent_events = [{**e, "run_id": owner.run_id} for e in silent.events]
    await store.append(prepared(silent_events, project=_SQUATTER))
    await store.append(prepared(owner.events, project=_OWNER))
    assert await store.sweep(now=_LONG_AGO, stuck_after_s=60.0, heartbeats=3) == [owner.run_id]
    before = await store.get_run(owner.run_id, project=_OWNER)
    assert before is not None
    span = before["nodes"][0]["span_id"]
    await _by_hand(
        engine_kind, request, tmp_path, "DELETE FROM node_runs WHERE run_id = ? AND span_id = ?", owner.run_id, span
    )
    report = await store.reconcile(ReconcileScope.everything(project=_OWNER), repair=True)
    assert report.repaired == 1
    assert await store.get_run(owner.run_id, project=_OWNER) == before
    stuck = await store.get_run(owner.run_id, project=_SQUATTER)
    assert stuck is not None
    assert stuck["status"] == "stuck"
    assert (await store.reconcile(ReconcileScope.everything(), repair=False)).clean


@pytest.mark.asyncio
async def test_error_group_samples_name_each_runs_project(store: Store) -> None:
    """Read without a project (keys off), a group's sample runs carry their projects: one run id failing in two
    projects (and in none) is three samples, each naming its run; a purge of one takes only that one away."""
    owner = _failing(_OWNER, "charge", "eu", "alphaword")
    for project in (None, _SQUATTER):
        twin = _failing(project, "charge", "eu", "word", run_id=owner.run_id)
        await store.append(prepared(twin.events))
    await store.append(prepared(owner.events))
    [group] = await store.error_groups(ErrorGroupQuery())
    assert group["count"] == 3
    assert sorted((s["run_id"], s["project"] or "") for s in group["sample_runs"]) == [
        (owner.run_id, ""),
        (owner.run_id, _OWNER),
        (owner.run_id, _SQUATTER),
    ]
    assert group["sample_run_ids"] == [s["run_id"] for s in group["sample_runs"]] == [owner.run_id] * 3
    [mine] = await store.error_groups(ErrorGroupQuery(project=_OWNER))
    assert mine["sample_runs"] == [{"run_id": owner.run_id, "project": _OWNER}]
    await store.purge(PurgeSelection(run_ids=(owner.run_id,), project=_SQUATTER, by="test"))
    [group] = await store.error_groups(ErrorGroupQuery())
    assert sorted((s["project"] or "") for s in group["sample_runs"]) == ["", _OWNER]
