"""What the sender counts, and its rule of logging each kind of problem once.

``flowledger.stats()`` reports these counters; see ``docs/sdk-delivery.md``.
"""

from __future__ import annotations

import enum
import logging
import threading
from typing import Final

from flowledger.instrument.delivery._failure import described

__all__ = ["COUNTERS", "Counters", "DropReason"]

_log = logging.getLogger("flowledger")

COUNTERS: Final = ("sent", "spooled", "replayed", "retries", "failures", "rejected")
"""Counters every sender reports, besides ``dropped`` and ``dropped_<reason>``."""


class DropReason(enum.StrEnum):
    """Why an event was dropped; each has a ``dropped_<reason>`` counter."""

    QUEUE_FULL = "queue_full"
    """The queue held ``queue_max_items`` events."""
    QUEUE_BYTES = "queue_bytes"
    """The queue held ``queue_max_bytes`` bytes."""
    TOO_LARGE = "too_large"
    """The receiver answered 413 for this event alone (it was set aside on disk when possible)."""
    SPOOL_FULL = "spool_full"
    """It could not be delivered and the spool was at ``spool_max_bytes``."""
    SPOOL_ERROR = "spool_error"
    """It could not be delivered and the spool folder could not be written."""
    UNSERIALIZABLE = "unserializable"
    """It could not be encoded as JSON."""
    CLOSED = "closed"
    """It was submitted after ``shutdown()``."""


class Counters:
    """Thread-safe counters of one sender, and the kinds of problem it has logged."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # re-entrant, like the sender's: signal handlers may count too
        self._counts: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        self._drops: dict[DropReason, int] = dict.fromkeys(DropReason, 0)
        self._logged: set[str] = set()
        self._families: dict[str, set[str]] = {}

    def add(self, name: str, count: int = 1) -> None:
        """Add to one of :data:`COUNTERS`."""
        with self._lock:
            self._counts[name] += count

    def drop(self, reason: DropReason, count: int = 1) -> None:
        """Count events dropped for ``reason``."""
        with self._lock:
            self._drops[reason] += count

    def __getitem__(self, name: str) -> int:
        return self._counts[name]

    def undelivered(self) -> int:
        """Events that will not reach the receiver from this process: spooled or dropped."""
        with self._lock:
            return self._counts["spooled"] + sum(self._drops.values())

    def dropped(self) -> int:
        """Events dropped so far, for any reason."""
        with self._lock:
            return sum(self._drops.values())

    def snapshot(self) -> dict[str, int]:
        """Every counter, with ``dropped`` (the total) and one ``dropped_<reason>`` per reason."""
        with self._lock:
            out = dict(self._counts)
            out["dropped"] = sum(self._drops.values())
            for reason, count in self._drops.items():
                out[f"dropped_{reason}"] = count
        return out

    def first_of(self, family: str, key: str, *, limit: int) -> bool:
        """Whether ``key`` is new in ``family`` and the family holds fewer than ``limit`` keys yet (then it is
        added): bounds what a process logs of things that can differ without end, such as rejection reasons."""
        with self._lock:
            seen = self._families.setdefault(family, set())
            if key in seen or len(seen) >= limit:
                return False
            seen.add(key)
            return True

    def log_once(self, kind: str, message: str, *args: object) -> None:
        """Log a warning on the ``flowledger`` logger, the first time ``kind`` happens only."""
        with self._lock:
            if kind in self._logged:
                return
            self._logged.add(kind)
        try:
            _log.warning(message, *args)
        except Exception:
            pass

    def internal_error(self, kind: str, exc: BaseException) -> None:
        """Count an unexpected error in ``failures`` and log the first of its kind (:func:`described`: never its text
        when that may quote a header or URL)."""
        self.add("failures")
        self.log_once(f"error-{kind}", "flowledger: internal error in the sender (%s): %s", kind, described(exc))
