"""Conformance: resume evidence checks whose ledger row the run's projection points at, and marks simulated effects.

The projection (``node_runs``, ``runs``) says where a node's output or the run's input is in the ledger; a row
there that verifies but is another node's, another run's, or a failed attempt's is tampering, on every engine.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from flowledger.receiver.store._protocol import Store
from tests.receiver._support import RunEvents
from tests.receiver.store.conformance.conftest import prepared

pytestmark = pytest.mark.asyncio


async def _change(engine_kind: str, request: pytest.FixtureRequest, tmp_path: Path, sql: str, *args: Any) -> None:
    """Run ``sql`` (``?`` placeholders) on the engine's database by hand, as someone with write access could."""
    if engine_kind == "postgres":
        import asyncpg

        for number in range(1, len(args) + 1):
            sql = sql.replace("?", f"${number}", 1)
        conn = await asyncpg.connect(request.getfixturevalue("postgres_url"))
        try:
            await conn.execute(sql, *args)
        finally:
            await conn.close()
        return
    db = sqlite3.connect(tmp_path / "conformance.db")
    try:
        with db:
            db.execute(sql, args)
    finally:
        db.close()


def _seq_of(run: RunEvents, kind: str, node_id: str | None = None) -> int:
    """The ledger seq of the run's event (the run's events are the only ones, appended in order from 1)."""
    for number, event in enumerate(run.events, start=1):
        if event["kind"] == kind and (node_id is None or event["data"].get("node_id") == node_id):
            return number
    raise AssertionError(f"no {kind} of {node_id}")


async def test_an_output_row_of_another_node_is_named_as_tampering(
    store: Store, engine_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """price failed; its projection rewritten to succeeded with fetch's node_finished: tampered, naming fetch."""
    run = RunEvents().start().node("fetch").node("price", status="failed").finish("failed")
    await store.append(prepared(run.events))
    fetch_seq = _seq_of(run, "node_finished", "fetch")
    await _change(
        engine_kind,
        request,
        tmp_path,
        "UPDATE node_runs SET status = 'succeeded', output_seq = ? WHERE run_id = ? AND node_id = 'price'",
        fetch_seq,
        run.run_id,
    )
    evidence = await store.resume_evidence(run.run_id)
    assert evidence is not None
    nodes = {n["node_id"]: n for n in evidence["nodes"]}
    assert nodes["price"]["tampered"] is True
    assert nodes["price"]["output"] is None
    assert nodes["price"]["problem"].startswith(f"ledger entry {fetch_seq} is the node_finished of node `fetch`")
    assert nodes["fetch"]["tampered"] is False
    assert nodes["fetch"]["output"] is not None


async def test_a_failed_attempt_made_to_look_succeeded_is_named_as_tampering(
    store: Store, engine_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Only the projection's status changed: the node's own node_finished says failed, so it is tampering."""
    run = RunEvents().start().node("price", status="failed").finish("failed")
    await store.append(prepared(run.events))
    await _change(
        engine_kind, request, tmp_path, "UPDATE node_runs SET status = 'succeeded' WHERE run_id = ?", run.run_id
    )
    evidence = await store.resume_evidence(run.run_id)
    assert evidence is not None
    (node,) = evidence["nodes"]
    assert node["tampered"] is True
    assert "records the node failed, not succeeded" in node["problem"]


async def test_an_output_row_of_another_run_or_a_wrong_input_row_is_named_as_tampering(
    store: Store, engine_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A node pointed at the same node's outcome in another run, and a run's input pointed at a node's row: both
    are tampering, each naming what the row is."""
    first = RunEvents().start().node("fetch").finish()
    second = RunEvents().start().node("fetch").finish()
    await store.append(prepared([*first.events, *second.events]))
    others = len(first.events) + _seq_of(second, "node_finished", "fetch")
    await _change(
        engine_kind, request, tmp_path, "UPDATE node_runs SET output_seq = ? WHERE run_id = ?", others, first.run_id
    )
    await _change(
        engine_kind,
        request,
        tmp_path,
        "UPDATE runs SET input_seq = ? WHERE run_id = ?",
        _seq_of(second, "node_started", "fetch") + len(first.events),
        second.run_id,
    )
    evidence = await store.resume_evidence(first.run_id)
    assert evidence is not None
    (node,) = evidence["nodes"]
    assert node["tampered"] is True
    assert f"ledger entry {others} belongs to another run" in node["problem"]
    other = await store.resume_evidence(second.run_id)
    assert other is not None
    assert other["run"]["input"]["tampered"] is True
    assert "is a node_started entry, not the run_started" in other["run"]["input"]["problem"]
    assert other["nodes"][0]["tampered"] is False


def _effect(run: RunEvents, node_id: str, *, simulated: bool) -> RunEvents:
    """Make ``node_id``'s records those of an effect (key ``k-1``), simulated or done."""
    for event in run.events:
        data = event["data"]
        if event["kind"] in ("node_started", "node_finished") and data.get("node_id") == node_id:
            data.update(effect=True, idempotency_key="k-1")
            if simulated and event["kind"] == "node_finished":
                data["simulated"] = True
    return run


async def test_a_simulated_effect_is_marked_and_a_done_one_is_not(store: Store) -> None:
    """An effect whose node_finished says simulated, and any effect of a dry run, is marked simulated; an effect
    of a live run is not; a node that is not an effect never is."""
    simulated = _effect(RunEvents().start().node("fetch").node("charge").finish(), "charge", simulated=True)
    dry = _effect(RunEvents().start(dry_run=True).node("fetch").node("charge").finish(), "charge", simulated=False)
    live = _effect(RunEvents().start().node("fetch").node("charge").finish(), "charge", simulated=False)
    await store.append(prepared([*simulated.events, *dry.events, *live.events]))
    for run, expected, dry_run in ((simulated, True, False), (dry, True, True), (live, False, False)):
        evidence = await store.resume_evidence(run.run_id)
        assert evidence is not None
        nodes = {n["node_id"]: n for n in evidence["nodes"]}
        assert (nodes["charge"]["simulated"], nodes["fetch"]["simulated"]) == (expected, False)
        assert nodes["charge"]["tampered"] is False
        assert evidence["run"]["dry_run"] is dry_run


async def test_a_node_id_holding_a_nul_is_its_own_row_on_every_engine(store: Store) -> None:
    """PostgreSQL stores a NUL in a node id as U+FFFD while the ledger keeps it: the row is still the node's own."""
    run = RunEvents(workflow_id="w").start().node("fetch\x00x").node("plain").finish("failed")
    await store.append(prepared(run.events))
    evidence = await store.resume_evidence(run.run_id)
    assert evidence is not None
    nodes = {node["node_id"].replace("\x00", "\ufffd"): node for node in evidence["nodes"]}
    assert nodes["fetch\ufffdx"]["problem"] is None
    assert nodes["fetch\ufffdx"]["tampered"] is False
