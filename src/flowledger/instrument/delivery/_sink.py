"""Where emitted events go: the ``EventSink`` plug-in point.

The hooks build each event as a JSON-safe ``dict`` (the wire format of
``flowledger._wire``, producer id and sequence already set) and hand it to
every active sink with a size estimate in bytes. The background sender is
one sink; ``flowledger.testing`` captures are another.

A sink whose class sets ``takes_pending = True`` (the sender and its
subclasses) is handed a :class:`~flowledger.instrument._pending.PendingEvent`
instead, and writes it out (``.event()``) on its own worker thread, so the
workflow's thread does not pay for the dict.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["EventSink"]


@runtime_checkable
class EventSink(Protocol):
    """Receives events from the hooks. No method may raise or block the caller."""

    def submit(self, event: dict[str, Any], size: int) -> None:
        """Take one event; ``size`` estimates its encoded JSON size in bytes.

        Called on the workflow's hot path: must return in microseconds,
        never block, never raise. The sink owns ``event`` from now on.
        """

    def flush(self, timeout_s: float) -> bool:
        """Deliver what was submitted; return whether all of it went out in time."""

    def shutdown(self, timeout_s: float) -> bool:
        """Flush, then release resources; idempotent. Return whether all went out."""
