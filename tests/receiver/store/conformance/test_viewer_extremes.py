"""The Store conformance suite, the viewer at the wire format's extremes: the largest cost a run may have (2**53 USD,
whose nano-dollars pass 2**63), costs past the 9.2 billion USD a 64-bit sum of nano-dollars holds, and a run that
starts at the last microsecond of the year 9999."""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, Final

import pytest

from flowledger._money import NANOS_PER_USD
from flowledger.receiver.store._protocol import Store
from flowledger.receiver.store._time import epoch_s
from flowledger.receiver.store._views import RunFilter
from tests.receiver._support import RunEvents
from tests.receiver.store.conformance.conftest import prepared

pytestmark = pytest.mark.asyncio

_USD_MAX: Final = 2**53
"""The largest ``cost.usd`` the wire format takes."""
_LAST_INSTANT: Final = "9999-12-31T23:59:59.999999Z"
_EPOCH: Final = "1970-01-01T00:00:00.000000Z"
_COUNTED: Final = ("total", "by_status", "dry_run", "live")


def _costing(usd: float, workflow_id: str = "big") -> RunEvents:
    """A finished run of one node whose cost is ``usd``."""
    run = RunEvents(workflow_id=workflow_id).start().node("fetch").finish()
    run.events[-1]["data"]["cost"] = {"usd": usd}
    return run


async def _summaries(store: Store) -> list[dict[str, Any]]:
    """The cards over every run: kept counts (no filter), counted over a time range, and over a search."""
    return [
        await store.run_summary(RunFilter()),
        await store.run_summary(RunFilter(since=_EPOCH)),
        await store.run_summary(RunFilter(workflow_id="big", since=_EPOCH)),
    ]


def _nanos(usd: float) -> int:
    """A run's nano-dollars as both engines read them: its whole dollars, and the nano-dollars of the rest of its
    float rounded half up."""
    whole = int(usd)
    return whole * NANOS_PER_USD + math.floor((usd - whole) * 1e9 + 0.5)


@pytest.mark.parametrize("usd", [float(_USD_MAX), 1e10, 9_300_000_000.25, 12_345_678.123456789, 0.1 + 0.2])
async def test_a_cost_past_2_63_nano_dollars_is_summed_exactly(store: Store, usd: float) -> None:
    """One run costing 2**53, 1e10, 9.3e9 + 0.25 USD (or less): every summary answers its exact nano-dollars, not an
    error nor a total capped at 9.2 billion USD, with or without a time range, and every engine the same figure."""
    run = _costing(usd)
    await store.append(prepared(run.events))
    listed = await store.get_run(run.run_id)
    assert listed is not None
    stored = listed["cost"]["usd"]  # the float of the amount's whole nano-dollars
    assert stored == pytest.approx(usd, rel=1e-15)
    for cards in await _summaries(store):
        assert cards["total_cost_usd_nanos"] == _nanos(stored)
        assert cards["total_cost_usd"] == stored
    if usd.is_integer() or usd == 9_300_000_000.25:
        assert _nanos(stored) == Fraction(usd) * NANOS_PER_USD


async def test_costs_adding_up_past_2_63_dollars_are_summed_without_error(store: Store) -> None:
    """1,030 runs of 2**53 USD each (their dollars pass 2**63) and one of 0.25 USD: every summary answers, within
    a relative 1e-15 of the exact total and the same with or without a time range."""
    runs = [_costing(float(_USD_MAX)) for _ in range(1_030)] + [_costing(0.25)]
    await store.append(prepared([event for run in runs for event in run.events]))
    exact = 1_030 * _USD_MAX * NANOS_PER_USD + NANOS_PER_USD // 4
    kept, *counted = await _summaries(store)
    assert kept["total"] == 1_031
    assert kept["total_cost_usd_nanos"] == pytest.approx(exact, rel=1e-15)
    for cards in counted:
        assert {key: cards[key] for key in _COUNTED} == {key: kept[key] for key in _COUNTED}
        assert cards["total_cost_usd_nanos"] == exact
        assert cards["total_cost_usd"] == pytest.approx(kept["total_cost_usd"], rel=1e-15)


async def test_a_run_starting_at_the_last_instant_of_9999_opens(store: Store) -> None:
    """A run and its attempt starting at 9999-12-31T23:59:59.999999Z: its header and attempts overview answer on
    every engine, the time span at that instant."""
    run = RunEvents().start().node("fetch")
    for event in run.events:
        event["ts"] = _LAST_INSTANT
        if "started_at" in event["data"]:
            event["data"].update(started_at=_LAST_INSTANT, duration_ms=0.0)
    await store.append(prepared(run.events))
    header = await store.run_header(run.run_id, project=None)
    assert header is not None
    overview = header["attempts"]
    assert overview["total"] == 1
    assert overview["t0"] == pytest.approx(epoch_s(_LAST_INSTANT), abs=1e-4)
    assert overview["max_concurrency"] == 1
