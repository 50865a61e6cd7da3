"""Helpers for testing code instrumented with flowledger.

``capture_events()`` collects every event the process emits while it is
open, in memory, without patching anything::

    from flowledger.testing import capture_events

    def test_price_is_recorded():
        with capture_events() as events:
            run_my_workflow()
        assert events.nodes("price")[0]["data"]["status"] == "succeeded"

By default captured events are not sent to a receiver; pass
``deliver=True`` to send them as usual as well.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flowledger._wire import EventKind
from flowledger.instrument._capture import materialize
from flowledger.instrument._pipeline import pipeline

__all__ = ["CapturedEvents", "capture_events"]


class CapturedEvents:
    """The events captured so far, in emission order (a thread-safe list)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []

    # the EventSink protocol
    def submit(self, event: dict[str, Any], size: int) -> None:
        plain = materialize(event)
        with self._lock:
            self._events.append(plain)

    def flush(self, timeout_s: float) -> bool:
        return True

    def shutdown(self, timeout_s: float) -> bool:
        return True

    # reading
    @property
    def all(self) -> list[dict[str, Any]]:
        """Every captured event."""
        with self._lock:
            return list(self._events)

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.all)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.all[index]

    def of_kind(self, kind: EventKind | str) -> list[dict[str, Any]]:
        """The events of one kind (``"run_started"``, ``EventKind.NODE_FINISHED``...)."""
        name = EventKind(kind).value
        return [e for e in self.all if e["kind"] == name]

    def runs(self) -> list[dict[str, Any]]:
        """The ``run_finished`` events: one per finished run."""
        return self.of_kind(EventKind.RUN_FINISHED)

    def nodes(self, node_id: str | None = None) -> list[dict[str, Any]]:
        """The ``node_finished`` events (of ``node_id`` only, if given)."""
        found = self.of_kind(EventKind.NODE_FINISHED)
        return [e for e in found if node_id is None or e["data"]["node_id"] == node_id]

    def clear(self) -> None:
        with self._lock:
            self._events.clear()


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
