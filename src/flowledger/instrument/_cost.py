"""Cost of a node or a run: tokens, tool calls, external requests, US dollars.

Dollars are added up as whole nano-dollars (:mod:`flowledger._money`), so a
total is exact: ``0.1`` added six times is ``0.6``, never ``0.6000000000000001``.
"""

from __future__ import annotations

import os
import threading
from decimal import Decimal
from typing import Any

from flowledger._money import nanos_to_usd, usd_to_nanos

__all__ = ["Cost"]

_lock = threading.Lock()
"""One lock for every total: additions are rare and short. A forked child gets a fresh one, so a
total that crossed the fork while another thread of the parent held the lock cannot hang the child."""


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Cost:
    """A running total that several threads may add to."""

    __slots__ = ("external_requests", "tokens", "tool_calls", "usd_nanos")

    def __init__(self) -> None:
        self.tokens = 0
        self.tool_calls = 0
        self.external_requests = 0
        self.usd_nanos = 0
        """US dollars spent, in whole nano-dollars (exact)."""

    @property
    def usd(self) -> float:
        """US dollars spent: the float that prints as the exact total."""
        return nanos_to_usd(self.usd_nanos)

    def add(
        self, *, tokens: int = 0, tool_calls: int = 0, external_requests: int = 0, usd: float | Decimal = 0.0
    ) -> None:
        """Add to the totals; raises ValueError (nothing added) for a negative count or a non-finite amount.

        ``usd`` is read as the decimal it prints as and kept to the nano-dollar (a Decimal is welcome).
        """
        try:
            nanos = usd_to_nanos(usd)
        except ValueError:
            nanos = -1
        if min(tokens, tool_calls, external_requests, nanos) < 0:
            raise ValueError(
                f"cost must be counts and an amount of zero or more, got tokens={tokens!r}, tool_calls={tool_calls!r}, "
                f"external_requests={external_requests!r}, usd={usd!r}"
            )
        with _lock:
            self.tokens += tokens
            self.tool_calls += tool_calls
            self.external_requests += external_requests
            self.usd_nanos += nanos

    def __bool__(self) -> bool:
        return bool(self.tokens or self.tool_calls or self.external_requests or self.usd_nanos)

    def as_dict(self) -> dict[str, Any]:
        """The wire form: ``{"tokens", "tool_calls", "external_requests", "usd"}``."""
        return {
            "tokens": self.tokens,
            "tool_calls": self.tool_calls,
            "external_requests": self.external_requests,
            "usd": nanos_to_usd(self.usd_nanos),
        }
