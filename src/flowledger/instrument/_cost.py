"""Cost of a node or a run: totals, and a breakdown by category, each with a count and exact dollars.

Dollars are added up as whole nano-dollars (:mod:`flowledger._money`), so a
total is exact: ``0.1`` added six times is ``0.6``, never ``0.6000000000000001``.

The breakdown is keyed by category (:class:`CostCategory`), and by a name
for the categories that have one: ``tokens_in``, ``tokens_out``, ``tokens``
(tokens not split into input and output), ``tool_calls``,
``external_requests`` (not named) and ``external_requests:<service>``,
``penalty:<kind>`` (``penalty:retry``, ``penalty:timeout``, or a kind of
the caller's), and ``other`` (dollars tied to no category). Each entry is a
count and an amount in nano-dollars; the totals are their sums.
"""

from __future__ import annotations

import enum
import os
import re
import threading
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any, Final, TypeAlias

from flowledger._money import nanos_to_usd, usd_to_nanos

__all__ = ["MAX_COST_KEYS", "Charge", "Cost", "CostCategory", "Penalty", "cost_key"]

Charge: TypeAlias = int | tuple[int, float | Decimal]
"""One category's part of a cost: a count, or a ``(count, usd)`` pair that also says what it cost."""

MAX_COST_KEYS: Final = 256
"""At most this many breakdown entries (categories and names) per cost."""
_MAX_COUNT: Final = 2**63 - 1
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class CostCategory(enum.StrEnum):
    """What a part of a cost was spent on."""

    TOKENS = "tokens"
    """Tokens not split into input and output."""
    TOKENS_IN = "tokens_in"
    TOKENS_OUT = "tokens_out"
    TOOL_CALLS = "tool_calls"
    EXTERNAL_REQUESTS = "external_requests"
    """Requests to other services; named by service (``external_requests:stripe``) when the caller says."""
    PENALTY = "penalty"
    """Work done again or lost: always named (``penalty:retry``, ``penalty:timeout``)."""
    OTHER = "other"
    """Dollars the caller tied to no category."""


class Penalty(enum.StrEnum):
    """The penalties the runtime of generated workflows records by itself."""

    RETRY = "retry"
    """An attempt after the first: counted on the attempt that retries."""
    TIMEOUT = "timeout"
    """An attempt cut at its ``timeout_s``: counted on that attempt."""


_TOKEN_KEYS: Final = frozenset({CostCategory.TOKENS, CostCategory.TOKENS_IN, CostCategory.TOKENS_OUT})


def cost_key(category: CostCategory, name: str | None = None) -> str:
    """The breakdown key of a category and, for the named ones, a name: ``external_requests:stripe``."""
    if name is None:
        if category is CostCategory.PENALTY:
            raise ValueError("a penalty needs a name, such as 'retry' or 'timeout'")
        return category.value
    if category not in (CostCategory.EXTERNAL_REQUESTS, CostCategory.PENALTY):
        raise ValueError(f"the cost category {category.value!r} has no names")
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        raise ValueError(
            f"a {category.value} name must be 1 to 64 letters, digits, '_', '.' or '-' starting with a letter "
            f"or digit, got {name!r}"
        )
    return f"{category.value}:{name}"


def _charge(what: str, charge: Any) -> tuple[int, int]:
    """``(count, nano-dollars)`` of one argument; ValueError naming it when it is not a valid charge."""
    if isinstance(charge, tuple):
        if len(charge) != 2:
            raise ValueError(f"{what} must be a count or a (count, usd) pair, got {charge!r}")
        count, usd = charge
        try:
            nanos = usd_to_nanos(usd)
        except ValueError:
            nanos = -1
    else:
        count, nanos = charge, 0
        usd = 0
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= _MAX_COUNT:
        raise ValueError(f"{what} must be a whole count of zero or more, got {count!r}")
    if nanos < 0:
        raise ValueError(f"the dollars of {what} must be an amount of zero or more, got {usd!r}")
    return count, nanos


def _named(category: CostCategory, what: str, charges: Mapping[str, Charge]) -> Iterator[tuple[str, int, int]]:
    if not isinstance(charges, Mapping):
        raise ValueError(f"{what} must be a mapping of names to counts, got {charges!r}")
    for name, charge in charges.items():
        count, nanos = _charge(f"{what}[{name!r}]", charge)
        yield cost_key(category, name), count, nanos


_lock = threading.Lock()
"""One lock for every total: additions are rare and short. A forked child gets a fresh one, so a
total that crossed the fork while another thread of the parent held the lock cannot hang the child."""


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Cost:
    """What a node attempt or a run cost: a running total that several threads may add to.

    ``Cost(tokens_in=(1200, 0.0036), external_requests={"stripe": 3})`` is a
    value to hand to an adapter's ``Recorder``; ``flowledger.cost(...)``
    takes the same arguments and adds them to the current node and run.
    """

    __slots__ = ("_items", "external_requests", "tokens", "tool_calls", "usd_nanos")

    def __init__(
        self,
        *,
        tokens: Charge = 0,
        tokens_in: Charge = 0,
        tokens_out: Charge = 0,
        tool_calls: Charge = 0,
        external_requests: Charge | Mapping[str, Charge] = 0,
        penalties: Mapping[str, Charge] | None = None,
        usd: float | Decimal = 0.0,
    ) -> None:
        self.tokens = 0
        self.tool_calls = 0
        self.external_requests = 0
        self.usd_nanos = 0
        """US dollars spent, in whole nano-dollars (exact)."""
        self._items: dict[str, list[int]] = {}
        self.add(
            tokens=tokens,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            tool_calls=tool_calls,
            external_requests=external_requests,
            penalties=penalties,
            usd=usd,
        )

    @property
    def usd(self) -> float:
        """US dollars spent: the float that prints as the exact total."""
        return nanos_to_usd(self.usd_nanos)

    @property
    def breakdown(self) -> dict[str, tuple[int, int]]:
        """``{key: (count, nano-dollars)}``, keys sorted (see the module's docstring for the keys)."""
        with _lock:
            return {key: (count, nanos) for key, (count, nanos) in sorted(self._items.items())}

    def add(
        self,
        *,
        tokens: Charge = 0,
        tokens_in: Charge = 0,
        tokens_out: Charge = 0,
        tool_calls: Charge = 0,
        external_requests: Charge | Mapping[str, Charge] = 0,
        penalties: Mapping[str, Charge] | None = None,
        usd: float | Decimal = 0.0,
    ) -> None:
        """Add to the totals; raises ValueError (nothing added) for a negative count, a non-finite amount or a bad name.

        Each category takes a count or a ``(count, usd)`` pair; ``external_requests``
        also a mapping of service names to those, ``penalties`` a mapping of
        penalty kinds to those. ``usd`` is money tied to no category. Amounts
        are read as the decimal they print as and kept to the nano-dollar (a Decimal is welcome).
        """
        parts: list[tuple[str, int, int]] = []
        for category, charge in (
            (CostCategory.TOKENS, tokens),
            (CostCategory.TOKENS_IN, tokens_in),
            (CostCategory.TOKENS_OUT, tokens_out),
            (CostCategory.TOOL_CALLS, tool_calls),
        ):
            count, nanos = _charge(category.value, charge)
            parts.append((category.value, count, nanos))
        if isinstance(external_requests, Mapping):
            parts += _named(CostCategory.EXTERNAL_REQUESTS, "external_requests", external_requests)
        else:
            count, nanos = _charge("external_requests", external_requests)
            parts.append((CostCategory.EXTERNAL_REQUESTS.value, count, nanos))
        if penalties is not None:
            parts += _named(CostCategory.PENALTY, "penalties", penalties)
        try:
            other = usd_to_nanos(usd)
        except ValueError:
            other = -1
        if other < 0:
            raise ValueError(f"cost must be counts and an amount of zero or more, got usd={usd!r}")
        parts.append((CostCategory.OTHER.value, 0, other))
        self._add_parts(parts)

    def merge(self, other: Cost) -> None:
        """Add everything ``other`` holds to this total."""
        self._add_parts([(key, count, nanos) for key, (count, nanos) in other.breakdown.items()])

    def _add_parts(self, parts: list[tuple[str, int, int]]) -> None:
        parts = [p for p in parts if p[1] or p[2]]
        if not parts:
            return
        with _lock:
            new = {key for key, _, _ in parts} - self._items.keys()
            if len(self._items) + len(new) > MAX_COST_KEYS:
                raise ValueError(f"a cost holds at most {MAX_COST_KEYS} categories and names; nothing was added")
            for key, count, nanos in parts:
                item = self._items.get(key)
                if item is None:
                    self._items[key] = [count, nanos]
                else:
                    item[0] += count
                    item[1] += nanos
                category = key.partition(":")[0]
                if category in _TOKEN_KEYS:
                    self.tokens += count
                elif category == CostCategory.TOOL_CALLS:
                    self.tool_calls += count
                elif category == CostCategory.EXTERNAL_REQUESTS:
                    self.external_requests += count
                self.usd_nanos += nanos

    def __bool__(self) -> bool:
        return bool(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cost) and self.breakdown == other.breakdown

    __hash__ = None  # type: ignore[assignment]  # a running total is mutable

    def __repr__(self) -> str:
        return f"Cost({self.breakdown!r})"

    def as_dict(self) -> dict[str, Any]:
        """The wire form: ``{"tokens", "tool_calls", "external_requests", "usd", "breakdown"}``.

        ``breakdown`` is ``{key: {"count", "usd_nanos"}}`` (integers: exact).
        """
        breakdown = self.breakdown
        return {
            "tokens": self.tokens,
            "tool_calls": self.tool_calls,
            "external_requests": self.external_requests,
            "usd": nanos_to_usd(self.usd_nanos),
            "breakdown": {key: {"count": count, "usd_nanos": nanos} for key, (count, nanos) in breakdown.items()},
        }

    @classmethod
    def from_dict(cls, wire: Mapping[str, Any]) -> Cost:
        """A cost from its wire form (an older one without ``breakdown`` too); ValueError when it is not one."""
        cost = cls()
        breakdown = wire.get("breakdown")
        if breakdown is None:
            cost.add(
                tokens=wire.get("tokens", 0),
                tool_calls=wire.get("tool_calls", 0),
                external_requests=wire.get("external_requests", 0),
                usd=wire.get("usd", 0),
            )
            return cost
        if not isinstance(breakdown, Mapping):
            raise ValueError(f"a cost's breakdown must be an object, got {breakdown!r}")
        parts: list[tuple[str, int, int]] = []
        for key, entry in breakdown.items():
            category, _, name = str(key).partition(":")
            try:
                checked = cost_key(CostCategory(category), name or None)
            except ValueError as exc:
                raise ValueError(f"a cost's breakdown has a bad key {key!r}: {exc}") from None
            if not isinstance(entry, Mapping):
                raise ValueError(f"the breakdown entry {key!r} must be an object, got {entry!r}")
            count, nanos = entry.get("count", 0), entry.get("usd_nanos", 0)
            for value in (count, nanos):
                if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_COUNT:
                    raise ValueError(f"the breakdown entry {key!r} must hold whole numbers of zero or more")
            parts.append((checked, count, nanos))
        cost._add_parts(parts)
        return cost
