"""Conformance: what a resume reads (outputs checked against the ledger) and the chain of resumes."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from flowledger.receiver.store._protocol import Store
from tests.receiver._support import RunEvents
from tests.receiver.store.conformance.conftest import prepared

pytestmark = pytest.mark.asyncio


def _with_full_output(run: RunEvents, node_id: str, output: Any) -> RunEvents:
    text = json.dumps(output, separators=(",", ":"))
    for event in run.events:
        if event["kind"] == "node_finished" and event["data"]["node_id"] == node_id:
            event["data"].update(
                output_full=text, output_capture="full", output_sha256=hashlib.sha256(text.encode()).hexdigest()
            )
    return run


def _resume_of(original: str) -> RunEvents:
    run = RunEvents().start()
    for event in run.events:
        if event["kind"] == "run_started":
            event["data"]["resumed_from"] = original
    return run.node("fetch").finish()


async def test_outputs_are_handed_out_verified_and_other_nodes_say_why_not(store: Store) -> None:
    """A full output comes back as its text, and so does one the default capture recorded whole; a recorded output
    that was cut or redacted, and a failed node, carry their problem."""
    cut = {"__flowledger__": "truncated", "preview": '{"rows":[1,2', "original_bytes": 9000, "omitted_bytes": 4904}
    run = (
        RunEvents()
        .start()
        .node("fetch")
        .node("price", output={"amount": 12.5, "lines": [1, "two", None, True]})
        .node("quote", output={"rows": cut})
        .node("login", output={"user": "ann", "password": "[REDACTED]"})
        .node("stock", status="failed")
        .finish("failed")
    )
    _with_full_output(run, "fetch", {"order": "A-1"})
    await store.append(prepared(run.events))
    evidence = await store.resume_evidence(run.run_id)
    assert evidence is not None
    nodes = {n["node_id"]: n for n in evidence["nodes"]}
    assert json.loads(nodes["fetch"]["output"]) == {"order": "A-1"}
    assert (nodes["fetch"]["problem"], nodes["fetch"]["output_capture"]) == (None, "full")
    assert json.loads(nodes["price"]["output"]) == {"amount": 12.5, "lines": [1, "two", None, True]}
    assert (nodes["price"]["problem"], nodes["price"]["output_capture"]) == (None, "recorded")
    assert nodes["price"]["output_sha256"] == hashlib.sha256(nodes["price"]["output"].encode()).hexdigest()
    assert nodes["quote"]["output"] is None
    assert "cut at the capture limit" in nodes["quote"]["problem"]
    assert nodes["login"]["output"] is None
    assert "redacted" in nodes["login"]["problem"]
    assert nodes["stock"]["status"] == "failed"
    assert evidence["tree"]["size"] == len(run.events)
    assert await store.resume_evidence("no-such-run") is None
    assert await store.resume_evidence(run.run_id, project="someone-else") is None


async def test_recorded_trigger_data_is_handed_out_and_a_null_is_not(store: Store) -> None:
    """Trigger data the default capture recorded whole comes back; a null does not (capture off writes null too)."""
    given = RunEvents().start(trigger_data={"order_id": "A-1", "qty": 3}).node("fetch", status="failed")
    unknown = RunEvents().start(trigger_data=None).node("fetch", status="failed")
    await store.append(prepared([*given.finish("failed").events, *unknown.finish("failed").events]))
    evidence = await store.resume_evidence(given.run_id)
    assert evidence is not None
    assert json.loads(evidence["run"]["input"]["text"]) == {"order_id": "A-1", "qty": 3}
    assert evidence["run"]["input"]["capture"] == "recorded"
    none = await store.resume_evidence(unknown.run_id)
    assert none is not None
    assert none["run"]["input"]["text"] is None
    assert "not recorded" in none["run"]["input"]["problem"]


def _edited(entry: bytes) -> bytes:
    return entry.replace(b'"producer_seq":', b'"producer_seq": ')


async def _edit_node_entry(engine_kind: str, request: pytest.FixtureRequest, tmp_path: Path, run_id: str) -> None:
    """Change the ledger entry of the run's node outcome in the database by hand (its triggers dropped)."""
    if engine_kind == "postgres":
        import asyncpg

        conn = await asyncpg.connect(request.getfixturevalue("postgres_url"))
        try:
            await conn.execute("DROP TRIGGER ledger_no_update ON ledger")
            seq = await conn.fetchval("SELECT output_seq FROM node_runs WHERE run_id = $1", run_id)
            entry = await conn.fetchval("SELECT entry FROM ledger WHERE seq = $1", seq)
            await conn.execute("UPDATE ledger SET entry = $1 WHERE seq = $2", _edited(bytes(entry)), seq)
        finally:
            await conn.close()
        return
    db = sqlite3.connect(tmp_path / "conformance.db")
    try:
        with db:
            db.execute("DROP TRIGGER IF EXISTS ledger_no_update")
            (seq,) = db.execute("SELECT output_seq FROM node_runs WHERE run_id = ?", (run_id,)).fetchone()
            # SQLite keeps the entry as its fields: a changed field is a changed entry
            db.execute("UPDATE ledger SET producer_seq = producer_seq + 1 WHERE seq = ?", (seq,))
    finally:
        db.close()


async def test_an_edited_ledger_entry_is_named_as_tampering(
    store: Store, engine_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Changing the node's ledger entry in the database breaks its chain check: tampered, no output."""
    run = _with_full_output(RunEvents().start().node("fetch").finish(), "fetch", {"order": "A-1"})
    await store.append(prepared(run.events))
    await _edit_node_entry(engine_kind, request, tmp_path, run.run_id)
    evidence = await store.resume_evidence(run.run_id)
    assert evidence is not None
    (node,) = evidence["nodes"]
    assert node["tampered"] is True
    assert node["output"] is None
    assert "is not in the hash chain" in node["problem"]


async def test_the_chain_lists_the_original_and_every_resume_oldest_first(store: Store) -> None:
    """From any run of the chain: the original, its resume and the resume of that resume."""
    original = RunEvents().start().node("fetch", status="failed").finish("failed")
    first = _resume_of(original.run_id)
    second = _resume_of(first.run_id)
    unrelated = RunEvents().start().finish()
    for run in (original, first, second, unrelated):
        await store.append(prepared(run.events))
    expected = [original.run_id, first.run_id, second.run_id]
    for member in expected:
        chain = await store.resume_chain(member)
        assert chain is not None
        assert [r["run_id"] for r in chain] == expected
    chain = await store.resume_chain(second.run_id)
    assert chain is not None
    assert chain[2]["resumed_from"] == first.run_id
    assert await store.resume_chain("no-such-run") is None
