"""When the sender tries again: backoff with full jitter, ``Retry-After``, a time budget, probes.

One batch gets at most ``max_retries`` retries, and its attempts and the
waits between them together stay within a time budget
(:data:`RETRY_BUDGET_S`): a receiver that answers 429 with a long
``Retry-After``, or one that hangs until every request times out, costs a
batch a few seconds, not minutes. Then the batch is spooled and the
receiver counts as down, so that the queue behind it keeps moving.

While the receiver is down, :class:`Outage` says when to probe it: first
``probe_min_s`` after the failure (or the ``Retry-After`` the receiver
asked for, if that is longer), then twice as long each time, up to
``probe_max_s``.
"""

from __future__ import annotations

import random
from typing import Final

__all__ = [
    "BACKOFF_BASE_S",
    "BACKOFF_MAX_S",
    "MIN_ATTEMPT_S",
    "PROBE_MAX_S",
    "PROBE_MIN_S",
    "RETRY_BUDGET_S",
    "Outage",
    "RetryBudget",
    "full_jitter_s",
]

BACKOFF_BASE_S: Final = 0.1
"""First retry waits up to this long; each further retry doubles the bound."""
BACKOFF_MAX_S: Final = 5.0
"""No single backoff wait is longer than this."""
RETRY_BUDGET_S: Final = 4.0
"""All attempts of one batch, and the waits between them, fit in this time; then the batch is spooled."""
MIN_ATTEMPT_S: Final = 0.05
"""A retry is not started with less of the budget left than this."""
PROBE_MIN_S: Final = 1.0
"""While the receiver is down, the first probe comes this long after the failure."""
PROBE_MAX_S: Final = 30.0
"""While the receiver is down, probes are at least this often."""


def full_jitter_s(attempt: int) -> float:
    """A random wait before retry ``attempt + 1``: uniform below a bound that doubles per attempt."""
    return random.uniform(0.0, min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**attempt))


class RetryBudget:
    """The retries one batch has left: a number of them, and time.

    Time is counted as the measured length of each attempt plus each wait
    granted by :meth:`next_wait_s` (so the budget holds whether or not the
    wait was slept in full).
    """

    __slots__ = ("_budget_s", "_retries", "_spent_s")

    def __init__(self, retries: int, budget_s: float) -> None:
        self._retries = max(retries, 0)
        self._budget_s = budget_s
        self._spent_s = 0.0

    @property
    def remaining_s(self) -> float:
        return max(self._budget_s - self._spent_s, 0.0)

    def attempt_timeout_s(self, timeout_s: float) -> float:
        """The timeout of the next attempt: ``timeout_s``, cut to what is left of the budget."""
        return max(min(timeout_s, self.remaining_s), MIN_ATTEMPT_S)

    def spend(self, seconds: float) -> None:
        """Count the time an attempt took."""
        self._spent_s += max(seconds, 0.0)

    def next_wait_s(self, attempt: int, retry_after_s: float | None = None) -> float | None:
        """The wait before retry ``attempt + 1``; None when no retry is left.

        The wait is the receiver's ``Retry-After`` when it gave one, else a
        full-jitter backoff. None when ``attempt`` retries were all there
        were, or when the wait and a minimal attempt would overrun the budget.
        """
        if attempt >= self._retries:
            return None
        wait_s = retry_after_s if retry_after_s is not None else full_jitter_s(attempt)
        if self._spent_s + wait_s + MIN_ATTEMPT_S > self._budget_s:
            return None
        self._spent_s += wait_s
        return wait_s


class Outage:
    """What the sender knows of the receiver's health, and when to probe it.

    Not thread-safe on its own: the sender reads and changes it under its lock.
    """

    __slots__ = (
        "_probe_max_s",
        "_probe_min_s",
        "_probe_wait_s",
        "down",
        "failing",
        "probe_at",
        "probe_now",
        "unreachable",
    )

    def __init__(self, probe_min_s: float = PROBE_MIN_S, probe_max_s: float = PROBE_MAX_S) -> None:
        self._probe_min_s = probe_min_s
        self._probe_max_s = probe_max_s
        self._probe_wait_s = probe_min_s
        self.failing = False
        """An attempt failed since the last success."""
        self.unreachable = False
        """A connection was refused since the last success: an exit does not wait for the receiver."""
        self.down = False
        """A batch was given up on: new batches are spooled at once until a probe succeeds."""
        self.probe_now = False
        """Probe with the next request (a flush or replay asked for it)."""
        self.probe_at = 0.0
        """``time.monotonic()`` of the next probe while down."""

    def attempt_failed(self, *, refused: bool) -> None:
        """A request failed (refused when the connection was refused)."""
        self.failing = True
        self.unreachable = self.unreachable or refused

    def went_down(self, now: float, at_least_s: float = 0.0) -> None:
        """A batch was given up on: schedule the next probe, further off each time, never before ``at_least_s``."""
        if self.down:
            self._probe_wait_s = min(self._probe_wait_s * 2, self._probe_max_s)
        self.down = True
        self.failing = True
        self.probe_now = False
        self.probe_at = now + max(self._probe_wait_s, at_least_s)

    def reschedule_probe(self, now: float) -> None:
        """A probe was started while idle: the next one comes after the current interval."""
        self.probe_at = now + self._probe_wait_s

    def recovered(self) -> bool:
        """The receiver accepted a request; return whether it had been failing (its spool wants a replay)."""
        came_back = self.down or self.failing
        self.failing = self.unreachable = self.down = self.probe_now = False
        self._probe_wait_s = self._probe_min_s
        return came_back

    def probe_due(self, now: float) -> bool:
        """Whether a request may go out while the receiver is down."""
        return self.probe_now or now >= self.probe_at
