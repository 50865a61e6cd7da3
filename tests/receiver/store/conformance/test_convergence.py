"""Order-independent convergence through every engine: the fold's promise, kept by the stored projections."""

from __future__ import annotations

import asyncio
import itertools
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowledger.receiver.store._event import PreparedEvent
from tests.receiver._support import Producer, simple_run, typical_run
from tests.receiver.store.conformance.conftest import ENGINES, EngineFactory, fresh_postgres, prepared


def _store_view(
    engine: EngineFactory, folder: Path, batches: list[list[PreparedEvent]], run_ids: list[str]
) -> list[Any]:
    async def main() -> list[Any]:
        store = engine(folder)
        await store.open()
        try:
            for batch in batches:
                await store.append(batch)
            return [await store.get_run(run_id) for run_id in run_ids]
        finally:
            await store.close()

    return asyncio.run(main())


def _converges(engine: EngineFactory, data: st.DataObject) -> None:
    producer = Producer()
    runs = [typical_run(producer), simple_run(producer)]
    events = [e for run in runs for e in run.events]
    run_ids = [run.run_id for run in runs]
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "a").mkdir()
        (Path(tmp) / "b").mkdir()
        expected = _store_view(engine, Path(tmp) / "a", [prepared(events)], run_ids)
        shuffled = data.draw(st.permutations(events + data.draw(st.lists(st.sampled_from(events), max_size=5))))
        cuts = sorted(data.draw(st.lists(st.integers(0, len(shuffled)), max_size=4)))
        bounds = [0, *cuts, len(shuffled)]
        batches = [prepared(shuffled[a:b]) for a, b in itertools.pairwise(bounds) if b > a]
        got = _store_view(engine, Path(tmp) / "b", batches, run_ids)
    assert got == expected


@pytest.mark.slow
@pytest.mark.parametrize("engine_name", sorted(ENGINES))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_stored_projection_converges_over_arrival_orders(engine_name: str, data: st.DataObject) -> None:
    """Through the real store, runs and nodes (payloads too) end the same whatever the order and batching."""
    _converges(ENGINES[engine_name], data)


@pytest.mark.slow
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_stored_projection_converges_over_arrival_orders_on_postgres(postgres_server: str, data: st.DataObject) -> None:
    """The same on PostgreSQL: each ordering folded into a database of its own."""
    _converges(fresh_postgres(postgres_server), data)
