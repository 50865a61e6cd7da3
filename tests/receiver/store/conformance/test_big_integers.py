"""The Store conformance suite, an event holding a JSON integer beyond a double's range (``1`` and 400 zeros):
ingest accepts it, and every reader of payloads reads it back: verify, the run detail, export, rebuild, reconcile
and proofs, on the store and through the CLI's verify, checkpoint, prove and verify-proof."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowledger.receiver.cli._commands import verify_command
from flowledger.receiver.cli._lifecycle import checkpoint_command, keygen_command, prove_command, verify_proof_command
from flowledger.receiver.store._integrity import ReconcileScope
from flowledger.receiver.store._protocol import RunQuery, Store
from flowledger.receiver.store._views import PayloadKind
from tests.receiver._support import RunEvents
from tests.receiver.store.conformance.conftest import EngineFactory, prepared

_BIG = 10**400
"""Past orjson's reach (it reads an integer as a double, and this one is infinite as a double)."""


async def _big_run(store: Store) -> RunEvents:
    run = RunEvents().start().node("price", output={"total": _BIG, "items": [-_BIG, 1]}).finish()
    await store.append(prepared(run.events))
    return run


@pytest.mark.asyncio
async def test_a_big_integer_is_read_back_by_every_reader(store: Store) -> None:
    """verify passes; the run detail, export, rebuild, reconcile and proofs read the event and its integer."""
    run = await _big_run(store)
    report = await store.verify()
    assert (report.ok, report.events, report.problem) == (True, len(run.events), None)
    detail = await store.get_run(run.run_id)
    assert detail is not None
    assert detail["status"] == "succeeded"
    span = run.events[2]["data"]["span_id"]
    output = await store.node_payload(run.run_id, span, PayloadKind.OUTPUT, project=None)
    assert output is not None
    assert json.loads(output) == {"total": _BIG, "items": [-_BIG, 1]}
    exported = [row async for row in store.iter_runs(RunQuery(), with_nodes=True)]
    assert [row["run_id"] for row in exported] == [run.run_id]
    assert (await store.rebuild()).clean
    assert (await store.reconcile(ReconcileScope.everything())).clean
    proofs = await store.run_proof(run.run_id, (await store.tree_head()).size)
    assert len(proofs) == len(run.events)
    assert (await store.verify()).ok


def test_the_cli_signs_and_proves_a_ledger_holding_a_big_integer(
    engine: EngineFactory, engine_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """verify --db exits 0, checkpoint signs, prove exports the run and verify-proof accepts it offline."""

    async def fill() -> RunEvents:
        store = engine(tmp_path)
        await store.open()
        try:
            return await _big_run(store)
        finally:
            await store.close()

    run = asyncio.run(fill())
    db = request.getfixturevalue("postgres_url") if engine_kind == "postgres" else str(tmp_path / "conformance.db")
    runner = CliRunner()
    key = tmp_path / "signing"
    assert runner.invoke(keygen_command, ["-o", str(key)]).exit_code == 0
    verified = runner.invoke(verify_command, ["--db", db])
    assert verified.exit_code == 0, verified.output
    assert f"ledger intact: {len(run.events)} events" in verified.output
    checkpoint = tmp_path / "checkpoint"
    signed = runner.invoke(checkpoint_command, ["--key", str(key), "--db", db, "-o", str(checkpoint)])
    assert signed.exit_code == 0, signed.output
    proof = tmp_path / "proof.json"
    proved = runner.invoke(prove_command, [run.run_id, "--checkpoint", str(checkpoint), "-o", str(proof), "--db", db])
    assert proved.exit_code == 0, proved.output
    checked = runner.invoke(verify_proof_command, [str(proof), "--key", f"{key}.pub", "--json"])
    assert checked.exit_code == 0, checked.output
    summary = json.loads(checked.output)
    assert (summary["valid"], summary["entries"], summary["payloads"]) == (True, len(run.events), len(run.events))
