"""Money, kept exact: US dollars as a whole number of nano-dollars.

Binary floats cannot hold most decimal amounts (0.1 + 0.2 is
0.30000000000000004), so adding up costs as floats shows noise like
``0.6000000000000003``. Every total flowledger keeps is a sum of whole
nano-dollars (10⁻⁹ USD) instead: the SDK's running totals, and the
receiver's sums over runs.

The wire format (version 1) is unchanged: ``cost.usd`` is a JSON number.
Both sides read it as the decimal it prints as (the shortest repr of the
float, which is what was written in the source: ``0.004`` is 0.004, not
0.00400000000000000008...), rounded half-even to the nano-dollar, and write
a total back as the float nearest to its exact decimal value, which prints
as that decimal (``600_000_000`` nano-dollars print as ``0.6``). A noisy
amount from an older SDK is read as the nano-dollar amount it is closest to.
Exactness holds for amounts up to :data:`EXACT_USD_MAX`; amounts finer than a
nano-dollar are rounded.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Final

__all__ = ["EXACT_USD_MAX", "NANOS_PER_USD", "nanos_to_usd", "usd_to_nanos"]

NANOS_PER_USD: Final = 1_000_000_000
"""Nano-dollars in a US dollar: the unit of every money total."""
EXACT_USD_MAX: Final = 10**6 - 1
"""Below a million USD an amount in nano-dollars has at most 15 significant digits, so its float prints as
its exact decimal; a total above it is still a sum of whole nano-dollars, but its JSON number may differ in
the last digit (the receiver's summary also gives the exact nano-dollars)."""
_NANO_DIGITS: Final = 9
_NANO: Final = Decimal(1).scaleb(-_NANO_DIGITS)


def usd_to_nanos(usd: float | int | Decimal | str) -> int:
    """The whole nano-dollars of an amount given as a number or decimal text; ValueError when it is not one.

    A float is read as the decimal it prints as (``0.1`` is one tenth), then rounded half-even.
    """
    if isinstance(usd, bool):
        raise ValueError(f"an amount of money must be a number, got {usd!r}")
    if isinstance(usd, float):
        if not math.isfinite(usd):
            raise ValueError(f"an amount of money must be finite, got {usd!r}")
        text = repr(usd)
        whole, point, fraction = text.partition(".")
        if point and len(fraction) <= _NANO_DIGITS and "e" not in fraction:
            # Nine decimals or fewer, no exponent: the digits are the nano-dollars, nothing to round (no Decimal).
            return int(whole + fraction.ljust(_NANO_DIGITS, "0"))
        exact = Decimal(text)
    else:
        try:
            exact = Decimal(usd)
        except (InvalidOperation, TypeError, ValueError):
            raise ValueError(f"an amount of money must be a number, got {usd!r}") from None
        if not exact.is_finite():
            raise ValueError(f"an amount of money must be finite, got {usd!r}")
    return int((exact / _NANO).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def nanos_to_usd(nanos: int) -> float:
    """The float nearest to ``nanos`` nano-dollars: it prints as their exact decimal (``600_000_000`` → ``0.6``)."""
    return nanos / NANOS_PER_USD
