"""The order-intake example's node functions: plain Python, sync and async.

Nothing here knows about flowledger except the optional ``flowledger.cost``
call; the generated module records every call.
"""

from __future__ import annotations

import asyncio
from typing import Any

import flowledger

CATALOG: dict[str, float] = {"apple": 0.5, "pear": 0.8, "plum": 0.3}
"""Unit prices in USD."""
STOCK: dict[str, int] = {"apple": 100, "pear": 2, "plum": 40}
PRICING_COST_USD = 0.001
"""What one pricing call costs (reported with flowledger.cost)."""


def fetch(order: dict[str, Any], *, region: str) -> list[dict[str, Any]]:
    """Look up each order line's unit price."""
    return [
        {"sku": line["sku"], "qty": int(line["qty"]), "unit_price": CATALOG.get(line["sku"]), "region": region}
        for line in order["lines"]
    ]


async def price(lines: list[dict[str, Any]]) -> float:
    """The order's total (an async node)."""
    await asyncio.sleep(0.01)
    flowledger.cost(tokens=120, usd=PRICING_COST_USD)
    return round(float(sum(line["qty"] * (line["unit_price"] or 0.0) for line in lines)), 2)


def in_catalog(lines: list[dict[str, Any]]) -> bool:
    """Whether every line names a known product (the `when` predicate of `stock`)."""
    return all(line["unit_price"] is not None for line in lines)


def stock(line: dict[str, Any]) -> dict[str, Any]:
    """Whether one line is in stock (mapped: called once per line)."""
    return {"sku": line["sku"], "available": STOCK.get(line["sku"], 0) >= line["qty"]}


def decide(inputs: dict[str, Any]) -> dict[str, Any]:
    """Accept the order when every line is in stock (an effect: simulated in dry runs)."""
    availability = inputs["stock"] or []
    accepted = bool(availability) and all(item["available"] for item in availability)
    return {"accepted": accepted, "total": inputs["price"]}
