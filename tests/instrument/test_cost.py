"""Cost totals in the SDK are exact: dollars are summed as whole nano-dollars."""

from __future__ import annotations

from decimal import Decimal

import pytest

import flowledger
from flowledger.instrument._cost import Cost
from flowledger.testing import CapturedEvents


def test_dollars_add_up_without_float_noise() -> None:
    """0.1 + 0.2 + 0.3 is 0.6 on the wire, not 0.6000000000000001."""
    cost = Cost()
    for usd in (0.1, 0.2, 0.3):
        cost.add(usd=usd)
    assert cost.usd_nanos == 600_000_000
    assert repr(cost.as_dict()["usd"]) == "0.6"
    assert 0.1 + 0.2 + 0.3 != 0.6  # what a float total says


def test_a_decimal_amount_is_kept_to_the_nano_dollar() -> None:
    """A Decimal is welcome and kept exactly; finer than a nano-dollar rounds half-even."""
    cost = Cost()
    cost.add(usd=Decimal("0.000000123"))
    cost.add(usd=Decimal("0.0000000015"))
    assert cost.usd_nanos == 125
    with pytest.raises(ValueError, match="zero or more"):
        cost.add(usd=Decimal("NaN"))
    assert cost.usd_nanos == 125


def test_run_totals_on_the_wire_are_exact(events: CapturedEvents) -> None:
    """A run whose nodes report 0.1, 0.2 and 0.3 dollars reports exactly 0.6."""

    @flowledger.node
    def ask(usd: float) -> None:
        flowledger.cost(usd=usd)

    with flowledger.run("agent"):
        for usd in (0.1, 0.2, 0.3):
            ask(usd)
    assert repr(events.runs()[0]["data"]["cost"]["usd"]) == "0.6"


def test_each_category_keeps_its_count_and_exact_dollars() -> None:
    """Tokens in and out, requests by service, penalties and unattributed dollars each keep (count, nano-dollars)."""
    cost = Cost(tokens_in=(1200, 0.0036), tokens_out=(300, Decimal("0.0045")))
    cost.add(external_requests={"stripe": (3, 0.09), "maps": 1}, penalties={"retry": 1}, usd=0.1)
    cost.add(external_requests=2, tool_calls=(4, 0.01))
    assert cost.breakdown == {
        "external_requests": (2, 0),
        "external_requests:maps": (1, 0),
        "external_requests:stripe": (3, 90_000_000),
        "other": (0, 100_000_000),
        "penalty:retry": (1, 0),
        "tokens_in": (1200, 3_600_000),
        "tokens_out": (300, 4_500_000),
        "tool_calls": (4, 10_000_000),
    }
    assert (cost.tokens, cost.external_requests, cost.tool_calls) == (1500, 6, 4)
    assert cost.usd_nanos == 208_100_000
    assert cost.as_dict()["usd"] == 0.2081


def test_the_wire_form_round_trips_and_an_older_one_reads_as_categories() -> None:
    """from_dict(as_dict()) is the same cost; a cost without a breakdown maps its totals to their categories."""
    cost = Cost(tokens_out=(7, 0.5), external_requests={"stripe": 3}, penalties={"timeout": 2})
    assert Cost.from_dict(cost.as_dict()) == cost
    old = Cost.from_dict({"tokens": 5, "tool_calls": 1, "external_requests": 2, "usd": 0.25})
    assert old.breakdown == {
        "tokens": (5, 0),
        "tool_calls": (1, 0),
        "external_requests": (2, 0),
        "other": (0, 250_000_000),
    }
    with pytest.raises(ValueError, match="bad key 'gifts'"):
        Cost.from_dict({"breakdown": {"gifts": {"count": 1, "usd_nanos": 0}}})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tokens_in": -1}, "tokens_in must be a whole count"),
        ({"tokens_out": (1, float("nan"))}, "the dollars of tokens_out"),
        ({"tool_calls": (1, 2, 3)}, "a count or a \\(count, usd\\) pair"),
        ({"external_requests": {"stri pe": 1}}, "external_requests name must be"),
        ({"penalties": {"": 1}}, "penalty name must be"),
        ({"external_requests": {"stripe": True}}, "external_requests\\['stripe'\\] must be a whole count"),
    ],
)
def test_a_bad_charge_adds_nothing_and_says_which(kwargs: dict[str, object], message: str) -> None:
    """Each bad argument is a ValueError naming it; the total is untouched."""
    cost = Cost(tokens=1)
    with pytest.raises(ValueError, match=message):
        cost.add(**kwargs)  # type: ignore[arg-type]
    assert cost.breakdown == {"tokens": (1, 0)}


def test_a_cost_holds_a_bounded_number_of_names() -> None:
    """Past MAX_COST_KEYS distinct keys an addition is refused whole."""
    from flowledger.instrument._cost import MAX_COST_KEYS

    cost = Cost(external_requests={f"s{i}": 1 for i in range(MAX_COST_KEYS)})
    with pytest.raises(ValueError, match="at most 256"):
        cost.add(penalties={"retry": 1})
    assert len(cost.breakdown) == MAX_COST_KEYS


def test_the_adapters_cost_is_the_sdks(events: CapturedEvents) -> None:
    """flowledger.adapters.Cost is flowledger.Cost: a Recorder adds its breakdown to the attempt and the run."""
    from flowledger.adapters import Cost as AdapterCost
    from flowledger.adapters import Recorder

    assert AdapterCost is flowledger.Cost
    recorder = Recorder()
    recorder.run_started("r", "wf")
    recorder.node_started("t", "llm", run_key="r")
    recorder.node_finished("t", output=1, cost=flowledger.Cost(tokens_in=(10, 0.001), tokens_out=5))
    recorder.run_finished("r")
    node_cost = events.nodes("llm")[0]["data"]["cost"]
    assert node_cost["breakdown"] == {
        "tokens_in": {"count": 10, "usd_nanos": 1_000_000},
        "tokens_out": {"count": 5, "usd_nanos": 0},
    }
    assert events.runs()[0]["data"]["cost"]["breakdown"] == node_cost["breakdown"]
