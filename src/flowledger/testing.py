"""Helpers for testing code instrumented with flowledger.

``capture_events()`` collects every event the process emits while it is
open, in memory, without patching anything::

    from flowledger.testing import capture_events

    def test_price_is_recorded():
        with capture_events() as events:
            run_my_workflow()
        assert events.nodes("price")[0]["data"]["status"] == "succeeded"

By default captured events are not sent to a receiver; pass
``deliver=True`` to send them as usual as well. Events kept from delivery
are numbered apart (``producer_seq``), so the ones the process sends after
the block show a receiver no gap, no event lost. With
``FLOWLEDGER_SINKS=memory`` the process keeps every event in memory
instead of sending it; ``memory_sink()`` returns that list.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flowledger.instrument._config import SinkKind
from flowledger.instrument._pipeline import pipeline
from flowledger.instrument.delivery._memory import MemorySink

__all__ = ["CapturedEvents", "MemorySink", "capture_events", "memory_sink"]


class CapturedEvents(MemorySink):
    """The events captured so far, in emission order (a thread-safe list, unbounded)."""


def memory_sink() -> MemorySink | None:
    """The process's ``memory`` sink (``FLOWLEDGER_SINKS=memory``), or None when it is not configured."""
    sink = pipeline().delivery_sink(str(SinkKind.MEMORY))
    return sink if isinstance(sink, MemorySink) else None


@contextmanager
def capture_events(*, deliver: bool = False) -> Iterator[CapturedEvents]:
    """Collect every event emitted while the block runs."""
    sink = CapturedEvents()
    p = pipeline()
    p.add_capture(sink, deliver=deliver)
    try:
        yield sink
    finally:
        p.remove_capture(sink)
        current = pipeline()  # configure() inside the block moved the capture to a new pipeline
        if current is not p:
            current.remove_capture(sink)
