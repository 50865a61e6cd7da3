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
