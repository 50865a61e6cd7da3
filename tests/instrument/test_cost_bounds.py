"""Costs and metric labels stay within what the wire format holds, so a run's last events are never refused."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import flowledger
from flowledger._wire import event_schema
from flowledger.instrument._cost import MAX_WIRE_INT, Cost
from flowledger.instrument._metric import MAX_LABEL_VALUE_CHARS
from flowledger.receiver._config import ReceiverConfig
from flowledger.testing import CapturedEvents
from tests.receiver._support import LiveReceiver, start_receiver


def test_the_bound_is_the_wire_formats() -> None:
    """Every count and nano-dollar field of a cost is bounded by MAX_WIRE_INT in events.v1.schema.json."""
    cost = event_schema()["$defs"]["cost"]["properties"]
    entry = cost["breakdown"]["additionalProperties"]["properties"]
    assert {cost[name]["maximum"] for name in ("tokens", "tool_calls", "external_requests")} == {MAX_WIRE_INT}
    assert entry["count"]["maximum"] == entry["usd_nanos"]["maximum"] == MAX_WIRE_INT
    assert cost["usd"]["maximum"] >= MAX_WIRE_INT / 1e9  # the dollars of the largest total are a number it takes


@pytest.mark.parametrize(
    ("first", "then"),
    [
        ({"tokens": MAX_WIRE_INT}, {"tokens": 1}),
        ({"tokens_in": MAX_WIRE_INT}, {"tokens_out": 1}),  # each entry fits, their total would not
        ({"usd": Decimal(MAX_WIRE_INT).scaleb(-9)}, {"tool_calls": (1, 0.000000001)}),
        ({"external_requests": {"stripe": MAX_WIRE_INT}}, {"external_requests": 1}),
        ({"penalties": {"retry": MAX_WIRE_INT}}, {"penalties": {"retry": 1}}),
    ],
)
def test_an_addition_past_the_bound_is_refused_whole(first: dict[str, Any], then: dict[str, Any]) -> None:
    """A ValueError saying so, and the totals as they were."""
    cost = Cost(**first)
    before = cost.as_dict()
    with pytest.raises(ValueError, match=r"would take a total past what the wire format holds .*; nothing was added"):
        cost.add(**then)
    assert cost.as_dict() == before


@pytest.mark.parametrize("usd", [10_000_000_000, 1e308, Decimal("1e400")])
def test_an_amount_past_the_bound_is_a_bad_argument(usd: Any) -> None:
    """More dollars than the wire format's nano-dollars hold is refused as a bad amount (a ValueError naming it)."""
    with pytest.raises(ValueError, match=r"at most 9223372036\.854775807, got usd="):
        Cost(usd=usd)


def test_cost_past_the_bound_in_a_run_is_counted_and_adds_nothing(events: CapturedEvents) -> None:
    """flowledger.cost() past the bound: an SDK error, the run's and the node's totals unchanged, never raised."""

    @flowledger.node
    def ask() -> None:
        flowledger.cost(tokens=MAX_WIRE_INT)
        flowledger.cost(tokens=MAX_WIRE_INT)  # the run's total would pass the bound
        flowledger.cost(usd=1e308)

    errors = flowledger.stats()["internal_errors"]
    with flowledger.run("wf"):
        ask()
    assert flowledger.stats()["internal_errors"] == errors + 2
    assert events.runs()[0]["data"]["cost"]["tokens"] == MAX_WIRE_INT
    assert events.nodes("ask")[0]["data"]["cost"]["tokens"] == MAX_WIRE_INT


@pytest.mark.parametrize(("digits", "sign"), [(200, 1), (5000, 1), (MAX_LABEL_VALUE_CHARS, -1)])
def test_an_int_label_with_more_digits_than_a_label_holds_is_a_usage_error(digits: int, sign: int) -> None:
    """metric(..., p=10**200): a UsageError at the call (not a ValueError for a huge int), naming the label."""
    label = sign * 10**digits

    @flowledger.node
    def measure() -> None:
        flowledger.metric("m", 1, p=label)

    with flowledger.run("wf"), pytest.raises(flowledger.UsageError, match="metric 'm': label 'p'"):
        measure()


def test_an_int_label_as_long_as_a_label_may_be_is_kept(events: CapturedEvents) -> None:
    """An int of 128 digits is a label value the wire format takes."""

    @flowledger.node
    def measure() -> None:
        flowledger.metric("m", 1, p=10 ** (MAX_LABEL_VALUE_CHARS - 1))

    with flowledger.run("wf"):
        measure()
    assert events.nodes("measure")[0]["data"]["metrics"][0]["labels"] == {"p": str(10 ** (MAX_LABEL_VALUE_CHARS - 1))}


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveReceiver]:
    """A real receiver on 127.0.0.1."""
    receiver = start_receiver(ReceiverConfig(db_path=tmp_path / "ledger.db", sweep_interval_s=0))
    yield receiver
    receiver.stop()


def test_a_run_reporting_more_than_the_bound_is_stored_finished(
    live: LiveReceiver, configure: Callable[..., Any], tmp_path: Path
) -> None:
    """Ten billion dollars, tokens at the bound three times, a metric tried with a huge label: the run ends stored."""
    configure(endpoint=live.url, spool_dir=tmp_path / "spool", export_spans=False)

    @flowledger.node
    def ask() -> None:
        flowledger.cost(usd=10_000_000_000)
        for _ in range(3):
            flowledger.cost(tokens=MAX_WIRE_INT)
        with pytest.raises(flowledger.UsageError):
            flowledger.metric("m", 1, p=10**200)
        flowledger.metric("m", 1, p=7)

    with flowledger.run("cost-bounds") as run:
        ask()
    assert flowledger.flush(10.0)
    assert flowledger.stats()["rejected"] == 0
    detail = live.get(f"/api/runs/{run.run_id}").json()
    assert detail["status"] == "succeeded"
    assert detail["nodes"][0]["status"] == "succeeded"
