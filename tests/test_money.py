"""Money is a whole number of nano-dollars, read from and written as the decimal a JSON number prints as."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowledger._money import EXACT_USD_MAX, NANOS_PER_USD, nanos_to_usd, usd_to_nanos


def test_a_float_is_read_as_the_decimal_it_prints_as() -> None:
    """0.004 is four thousandths; a noisy 0.6000000000000003 is the 0.6 it stands for."""
    assert usd_to_nanos(0.004) == 4_000_000
    assert usd_to_nanos(0.6000000000000003) == 600_000_000
    assert usd_to_nanos(Decimal("1.0000000005")) == 1_000_000_000  # half-even
    assert usd_to_nanos("2.5") == 2_500_000_000
    assert usd_to_nanos(3) == 3 * NANOS_PER_USD


@pytest.mark.parametrize("bad", [math.nan, math.inf, "ten", Decimal("Infinity"), True])
def test_what_is_not_an_amount_is_refused(bad: object) -> None:
    """NaN, infinities, text that is not a number and booleans are ValueErrors."""
    with pytest.raises(ValueError, match="money"):
        usd_to_nanos(bad)  # type: ignore[arg-type]


@given(st.integers(min_value=0, max_value=EXACT_USD_MAX * NANOS_PER_USD + NANOS_PER_USD - 1))
def test_nanos_round_trip_through_the_json_number(nanos: int) -> None:
    """Below EXACT_USD_MAX the float of an amount prints as its exact decimal and reads back as the same nanos."""
    usd = nanos_to_usd(nanos)
    assert usd_to_nanos(float(repr(usd))) == nanos
    assert Decimal(repr(usd)) == Decimal(nanos).scaleb(-9)


def _through_decimal(usd: float) -> int:
    """The definition: the decimal the float prints as, in nano-dollars, rounded half-even."""
    return int((Decimal(repr(usd)) / Decimal(1).scaleb(-9)).quantize(Decimal(1), rounding="ROUND_HALF_EVEN"))


@given(
    st.floats(min_value=-(2.0**53), max_value=2.0**53)
    | st.sampled_from([0.0, -0.0, 1e-05, 1e-09, 5e-10, 1.5e-09, 2.5e-09, 0.123456789, 0.1234567895, 1e15, 2.0**53])
    | st.integers(min_value=-(10**15), max_value=10**15).map(lambda n: n / 10 ** (n % 12))
)
def test_a_float_is_read_as_the_decimal_it_prints_as_on_every_path(usd: float) -> None:
    """Floats with up to nine decimals (read digit by digit) and the rest (read as a Decimal) agree with the rule."""
    assert usd_to_nanos(usd) == _through_decimal(usd)
