"""Reconciliation on the PostgreSQL engine: projection rows edited by hand are found by kind and repaired."""

from __future__ import annotations

import asyncpg
import pytest

from flowledger.receiver.store._integrity import DriftKind, ReconcileScope
from flowledger.receiver.store.postgres import PostgresStore
from tests.receiver._support import simple_run, typical_run
from tests.receiver.store.conformance.conftest import prepared

pytestmark = pytest.mark.asyncio


async def test_hand_edits_are_found_by_kind_and_repaired_from_the_ledger(postgres_url: str) -> None:
    """A changed status, a deleted run row, a run no event backs and a changed attempt are each reported;
    a repair rewrites them from the ledger and a further check is clean."""
    runs = [typical_run(), simple_run(), simple_run(), simple_run()]
    store = PostgresStore(postgres_url)
    await store.open()
    try:
        await store.append(prepared([e for run in runs for e in run.events]))
        assert (await store.reconcile(ReconcileScope.everything())).clean
        conn = await asyncpg.connect(postgres_url)
        try:
            await conn.execute("UPDATE runs SET status = 'succeeded' WHERE run_id = $1", runs[0].run_id)
            await conn.execute("DELETE FROM runs WHERE run_id = $1", runs[1].run_id)
            await conn.execute("INSERT INTO runs (run_id, status, workflow_id) VALUES ('zz-made-up', 'failed', 'w')")
            await conn.execute("UPDATE node_runs SET duration_ms = 99999 WHERE run_id = $1", runs[2].run_id)
            found = await store.reconcile(ReconcileScope.everything())
            assert not found.clean
            assert found.kinds[DriftKind.STATUS_MISMATCH].samples == [runs[0].run_id]
            assert found.kinds[DriftKind.MISSING_IN_PROJECTION].samples == [runs[1].run_id]
            assert found.kinds[DriftKind.MISSING_IN_LEDGER].samples == ["zz-made-up"]
            span = runs[2].events[1]["data"]["span_id"]
            assert found.kinds[DriftKind.FIELD_MISMATCH].samples == [f"{runs[2].run_id}/{span}"]
            assert found.repaired == 0
            assert (await store.reconcile(ReconcileScope(run_ids=(runs[3].run_id,)))).clean
            repaired = await store.reconcile(ReconcileScope.everything(), repair=True)
            assert repaired.repaired == 4
            assert (await store.reconcile(ReconcileScope.everything())).clean
            status = await conn.fetchval("SELECT status FROM runs WHERE run_id = $1", runs[0].run_id)
            made_up = await conn.fetchval("SELECT count(*) FROM runs WHERE run_id = 'zz-made-up'")
            assert (status, made_up) == ("failed", 0)
        finally:
            await conn.close()
    finally:
        await store.close()
