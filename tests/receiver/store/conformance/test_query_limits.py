"""The Store conformance suite, query edges: repeated and contradicting attribute filters and empty time ranges
answer alike on every engine, each repeat costing nothing."""

from __future__ import annotations

import pytest

from flowledger.receiver.store._error_groups import ErrorGroupQuery
from flowledger.receiver.store._protocol import RunQuery, Store
from flowledger.receiver.store._query import runs_where
from flowledger.receiver.store._stats import StatsQuery
from flowledger.receiver.store.postgres._search import pg_runs_where
from tests.receiver._support import RunEvents, typical_run
from tests.receiver.store.conformance.conftest import prepared

pytestmark = pytest.mark.asyncio

_GOLD = ("tier", "gold")


async def _tiered(store: Store) -> tuple[RunEvents, RunEvents]:
    gold = RunEvents().start(attributes={"tier": "gold", "region": "eu"}).node("fetch").finish()
    silver = RunEvents().start(attributes={"tier": "silver", "region": "eu"}).node("fetch").finish()
    await store.append(prepared(gold.events + silver.events))
    return gold, silver


async def test_repeated_attribute_filters_count_once(store: Store) -> None:
    """A thousand repeats of one filter answer what it answers alone, and are one lookup in either engine's SQL."""
    gold, _ = await _tiered(store)
    page = await store.list_runs(RunQuery(attributes=(_GOLD,) * 1000))
    assert [run["run_id"] for run in page.runs] == [gold.run_id]
    assert page.total == 1
    for where in (runs_where, pg_runs_where):
        sql, params = where(RunQuery(attributes=(_GOLD, ("region", "eu"), _GOLD) * 300))
        assert sql.count("run_attributes") == 2
        assert params == ["tier", "gold", "region", "eu"]


async def test_one_key_given_two_values_matches_no_run(store: Store) -> None:
    """tier=gold and tier=silver together match no run, looked up in neither engine."""
    await _tiered(store)
    query = RunQuery(attributes=(_GOLD, ("region", "eu"), ("tier", "silver")))
    page = await store.list_runs(query)
    assert (page.runs, page.total, page.next) == ([], 0, None)
    for where in (runs_where, pg_runs_where):
        sql, params = where(query)
        assert "run_attributes" not in sql
        assert params == []


async def test_an_empty_time_range_has_no_error_groups(store: Store) -> None:
    """until at or before since (both in one hour) answers no error groups, as the statistics answer no groups."""
    run = typical_run()
    await store.append(prepared(run.events))
    failed_at = next(e["ts"] for e in run.events if e["kind"] == "node_finished" and e["data"]["status"] == "failed")
    hour = failed_at[:13] + ":00:00.000000Z"
    assert await store.error_groups(ErrorGroupQuery(since=hour, until=failed_at)) != []
    for until in (failed_at, hour):
        assert await store.error_groups(ErrorGroupQuery(since=failed_at, until=until)) == []
        assert await store.run_stats(StatsQuery(since=failed_at, until=until)) == []
