"""Cost of a node or a run: totals, and a breakdown by category, each with a count and exact dollars.

Dollars are added up as whole nano-dollars (:mod:`flowledger._money`), so a
total is exact: ``0.1`` added six times is ``0.6``, never ``0.6000000000000001``.

Every count and nano-dollar amount, and every total, is at most
:data:`MAX_WIRE_INT` (2**63 - 1, what the wire format and SQLite hold;
about 9.2 billion USD): an addition that would take one past it is refused
whole (ValueError, nothing added), so a run's cost never makes its
``run_finished`` one the receiver refuses.

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
from reprlib import repr as _q  # quoted, and cut short: a message never carries a whole value
from typing import Any, Final, TypeAlias

from flowledger._money import nanos_to_usd, usd_to_nanos

__all__ = ["MAX_COST_KEYS", "MAX_WIRE_INT", "Charge", "Cost", "CostCategory", "Penalty", "cost_key", "cost_parts"]

Charge: TypeAlias = int | tuple[int, float | Decimal]
"""One category's part of a cost: a count, or a ``(count, usd)`` pair that also says what it cost."""

MAX_COST_KEYS: Final = 256
"""At most this many breakdown entries (categories and names) per cost."""
MAX_WIRE_INT: Final = 2**63 - 1
"""The largest count or nano-dollar amount, each and totalled (``events.v1.schema.json``'s cost; a test ties them)."""
_MAX_USD: Final = Decimal(MAX_WIRE_INT).scaleb(-9)
"""The dollars :data:`MAX_WIRE_INT` nano-dollars are (9223372036.854775807), as messages show them."""
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


_TOTAL_OF: Final = {
    "tokens": "tokens",
    "tokens_in": "tokens",
    "tokens_out": "tokens",
    "tool_calls": "tool_calls",
    "external_requests": "external_requests",
}
"""The total each unnamed key counts toward (``external_requests:<service>`` too; penalties and other: none)."""
_EXTERNAL_PREFIX: Final = "external_requests:"


def _total_of(key: str) -> str | None:
    """The total a breakdown key counts toward (``tokens``, ``tool_calls``, ``external_requests``), or None."""
    total = _TOTAL_OF.get(key)
    if total is None and key.startswith(_EXTERNAL_PREFIX):
        return "external_requests"
    return total


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
            f"or digit, got {_q(name)}"
        )
    return f"{category.value}:{name}"


def _nanos(usd: Any) -> int:
    """The nano-dollars of an amount, or -1 when it is not one from 0 to :data:`MAX_WIRE_INT` nano-dollars."""
    try:
        nanos = usd_to_nanos(usd)
    except (ValueError, ArithmeticError):  # decimal.InvalidOperation for an amount past a Decimal's precision
        return -1
    return nanos if 0 <= nanos <= MAX_WIRE_INT else -1


def _shown(value: Any) -> str:
    """``value`` for a message: an integer too long to print is described by its size."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    return _q(value)


def _charge(what: str, charge: Any) -> tuple[int, int]:
    """``(count, nano-dollars)`` of one argument; ValueError naming it when it is not a valid charge."""
    if isinstance(charge, tuple):
        if len(charge) != 2:
            raise ValueError(f"{what} must be a count or a (count, usd) pair, got {_q(charge)}")
        count, usd = charge
        nanos = _nanos(usd)
    else:
        count, nanos = charge, 0
        usd = 0
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_WIRE_INT:
        raise ValueError(f"{what} must be a whole count of zero or more, at most 2**63 - 1, got {_shown(count)}")
    if nanos < 0:
        raise ValueError(
            f"the dollars of {what} must be an amount of zero or more, at most {_MAX_USD}, got {_shown(usd)}"
        )
    return count, nanos


def _named(category: CostCategory, what: str, charges: Mapping[str, Charge]) -> Iterator[tuple[str, int, int]]:
    if not isinstance(charges, Mapping):
        raise ValueError(f"{what} must be a mapping of names to counts, got {_q(charges)}")
    for name, charge in charges.items():
        count, nanos = _charge(f"{what}[{_q(name)}]", charge)
        yield cost_key(category, name), count, nanos


def cost_parts(
    *,
    tokens: Charge = 0,
    tokens_in: Charge = 0,
    tokens_out: Charge = 0,
    tool_calls: Charge = 0,
    external_requests: Charge | Mapping[str, Charge] = 0,
    penalties: Mapping[str, Charge] | None = None,
    usd: float | Decimal = 0.0,
) -> list[tuple[str, int, int]]:
    """The checked ``(key, count, nano-dollars)`` parts of a cost's arguments, zeros left out.

    ValueError naming a bad argument.
    """
    parts: list[tuple[str, int, int]] = []
    for key, charge in (
        ("tokens", tokens),
        ("tokens_in", tokens_in),
        ("tokens_out", tokens_out),
        ("tool_calls", tool_calls),
    ):
        if charge.__class__ is int:  # the common case: a plain count, often 0 (not given)
            if charge == 0:
                continue
            if 0 < charge <= MAX_WIRE_INT:
                parts.append((key, charge, 0))
                continue
        count, nanos = _charge(key, charge)
        if count or nanos:
            parts.append((key, count, nanos))
    if isinstance(external_requests, Mapping):
        parts += [
            p for p in _named(CostCategory.EXTERNAL_REQUESTS, "external_requests", external_requests) if p[1] or p[2]
        ]
    elif not (external_requests.__class__ is int and external_requests == 0):
        count, nanos = _charge("external_requests", external_requests)
        if count or nanos:
            parts.append((CostCategory.EXTERNAL_REQUESTS.value, count, nanos))
    if penalties is not None:
        parts += [p for p in _named(CostCategory.PENALTY, "penalties", penalties) if p[1] or p[2]]
    if usd:
        other = _nanos(usd)
        if other < 0:
            raise ValueError(
                f"cost must be counts and an amount of zero or more, at most {_MAX_USD}, got usd={_shown(usd)}"
            )
        if other:
            parts.append((CostCategory.OTHER.value, 0, other))
    elif isinstance(usd, bool) or not isinstance(usd, int | float | Decimal):  # a zero of another kind
        raise ValueError(f"cost must be counts and an amount of zero or more, at most {_MAX_USD}, got usd={_q(usd)}")
    return parts


_lock = threading.RLock()
"""One lock for every total: additions are rare and short. A forked child gets a fresh one, so a
total that crossed the fork while another thread of the parent held the lock cannot hang the child.
Re-entrant: a signal handler that records a run (its cost) may interrupt a thread holding it."""


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.RLock()


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
        if not (tokens or tokens_in or tokens_out or tool_calls or external_requests or penalties or usd):
            return  # nothing to add (a fresh running total)
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
        self.add_parts(
            cost_parts(
                tokens=tokens,
                tokens_in=tokens_in,
                tokens_out=tokens_out,
                tool_calls=tool_calls,
                external_requests=external_requests,
                penalties=penalties,
                usd=usd,
            )
        )

    def merge(self, other: Cost) -> None:
        """Add everything ``other`` holds to this total."""
        self.add_parts([(key, count, nanos) for key, (count, nanos) in other.breakdown.items()])

    def add_parts(self, parts: list[tuple[str, int, int]]) -> None:
        """Add checked ``(key, count, nano-dollars)`` parts (what :func:`cost_parts` makes).

        ValueError (nothing added) past :data:`MAX_COST_KEYS` keys, or when a count, an amount or a total
        would pass :data:`MAX_WIRE_INT`.
        """
        if not parts:
            return
        items = self._items
        with _lock:
            if len(items) + len(parts) > MAX_COST_KEYS and len(items.keys() | {p[0] for p in parts}) > MAX_COST_KEYS:
                raise ValueError(f"a cost holds at most {MAX_COST_KEYS} categories and names; nothing was added")
            self._check_room(parts)
            for key, count, nanos in parts:
                item = items.get(key)
                if item is None:
                    items[key] = [count, nanos]
                else:
                    item[0] += count
                    item[1] += nanos
                total = _total_of(key)
                if total == "tokens":
                    self.tokens += count
                elif total == "tool_calls":
                    self.tool_calls += count
                elif total == "external_requests":
                    self.external_requests += count
                self.usd_nanos += nanos

    def _check_room(self, parts: list[tuple[str, int, int]]) -> None:
        """ValueError when adding ``parts`` would take an entry or a total past :data:`MAX_WIRE_INT` (lock held).

        The receiver refuses a cost past it, and with it the whole ``run_finished``: the addition is refused
        instead, the totals kept as they were.
        """
        added: dict[str, list[int]] = {}
        totals = {"tokens": self.tokens, "tool_calls": self.tool_calls, "external_requests": self.external_requests}
        nanos_total = self.usd_nanos
        for key, count, nanos in parts:
            entry = added.get(key)
            if entry is None:
                entry = added[key] = list(self._items.get(key, (0, 0)))
            entry[0] += count
            entry[1] += nanos
            total = _total_of(key)
            if total is not None:
                totals[total] += count
            nanos_total += nanos
        if (
            nanos_total > MAX_WIRE_INT
            or any(value > MAX_WIRE_INT for value in totals.values())
            or any(count > MAX_WIRE_INT or nanos > MAX_WIRE_INT for count, nanos in added.values())
        ):
            raise ValueError(
                f"this cost would take a total past what the wire format holds (counts to 2**63 - 1, dollars to "
                f"{_MAX_USD}); nothing was added"
            )

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
        with _lock:
            items = sorted(self._items.items())
            breakdown = {key: {"count": count, "usd_nanos": nanos} for key, (count, nanos) in items}
            return {
                "tokens": self.tokens,
                "tool_calls": self.tool_calls,
                "external_requests": self.external_requests,
                "usd": nanos_to_usd(self.usd_nanos),
                "breakdown": breakdown,
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
            raise ValueError(f"a cost's breakdown must be an object, got {_q(breakdown)}")
        parts: list[tuple[str, int, int]] = []
        for key, entry in breakdown.items():
            category, _, name = str(key).partition(":")
            try:
                checked = cost_key(CostCategory(category), name or None)
            except ValueError as exc:
                raise ValueError(f"a cost's breakdown has a bad key {_q(key)}: {exc}") from None
            if not isinstance(entry, Mapping):
                raise ValueError(f"the breakdown entry {_q(key)} must be an object, got {_q(entry)}")
            count, nanos = entry.get("count", 0), entry.get("usd_nanos", 0)
            for value in (count, nanos):
                if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_WIRE_INT:
                    raise ValueError(f"the breakdown entry {_q(key)} must hold whole numbers of zero or more")
            parts.append((checked, count, nanos))
        cost.add_parts([p for p in parts if p[1] or p[2]])
        return cost
