"""A run's cost folded by an earlier receiver (keyed ``2:<event_id>``, the larger id deciding) after the upgrade."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from flowledger._wire import new_event_id
from flowledger.receiver.store._sqlite import SqliteStore
from tests.receiver.store.conformance.conftest import prepared
from tests.receiver.store.conformance.test_stats_order_independence import _Producer


async def _append(path: Path, events: list[dict[str, object]]) -> None:
    store = SqliteStore(path)
    await store.open()
    try:
        await store.append(prepared(events))
    finally:
        await store.close()


async def _cost_then_rebuilt(path: Path, run_id: str) -> tuple[float, float]:
    store = SqliteStore(path)
    await store.open()
    try:
        before = await store.get_run(run_id)
        await store.rebuild()
        after = await store.get_run(run_id)
        assert before is not None
        assert after is not None
        return before["cost"]["usd"], after["cost"]["usd"]
    finally:
        await store.close()


def test_a_legacy_cost_of_a_losing_finish_is_not_replaced_by_another_loser(tmp_path: Path) -> None:
    """A run an earlier receiver gave the losing finish's cost keeps it when a third, also losing, finish arrives
    (it took that one's cost, a third wrong value); `rebuild` gives the winner's."""
    path = tmp_path / "old.db"
    p, run = _Producer(), new_event_id()
    won, lost = p.finished(run, "succeeded", 1.5, 100.0), p.finished(run, "failed", 7.0, 500.0)
    asyncio.run(_append(path, [p.started(run), won, lost]))
    with sqlite3.connect(path) as conn:  # as an earlier receiver left it: the larger event id's cost
        conn.execute("UPDATE runs SET cost_usd = 7.0, cost_key = ? WHERE run_id = ?", (f"2:{lost['event_id']}", run))
    asyncio.run(_append(path, [p.finished(run, "aborted", 3.0, 900.0)]))
    assert asyncio.run(_cost_then_rebuilt(path, run)) == (7.0, 1.5)
