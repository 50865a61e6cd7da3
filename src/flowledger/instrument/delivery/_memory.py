"""The memory sink: events kept in a bounded list in the process.

``FLOWLEDGER_SINKS=memory`` keeps every event the process emits here (read
them with ``flowledger.testing.memory_sink()``); ``flowledger.testing``'s
``capture_events()`` is one too, unbounded and open only while its block
runs. Events are stored as plain JSON values (captured payloads decoded),
so a test reads them as the receiver would. Nothing leaves the process, so
flush and shutdown return at once; an event past ``max_items`` is dropped
and counted, as the sender's queue does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from flowledger._wire import EventKind
from flowledger.instrument.capture import materialize
from flowledger.instrument.delivery._counters import Counters, DropReason

__all__ = ["MemorySink"]


class MemorySink:
    """A thread-safe list of events, in emission order. Implements ``EventSink``."""

    def __init__(self, max_items: int | None = None) -> None:
        self.max_items = max_items
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []
        self._counters = Counters()
        self._closed = False

    # the EventSink protocol
    def submit(self, event: dict[str, Any], size: int) -> None:
        try:
            plain = materialize(event)
            with self._lock:
                if self._closed:
                    reason: DropReason | None = DropReason.CLOSED
                elif self.max_items is not None and len(self._events) >= self.max_items:
                    reason = DropReason.QUEUE_FULL
                else:
                    self._events.append(plain)
                    reason = None
            if reason is None:
                self._counters.add("sent")
            else:
                self._counters.drop(reason)
        except Exception as exc:
            self._counters.internal_error("memory", exc)

    def flush(self, timeout_s: float) -> bool:
        return True

    def shutdown(self, timeout_s: float) -> bool:
        self._closed = True
        return True

    def stats(self) -> dict[str, int]:
        """Counters: ``sent`` (kept), ``dropped`` and why."""
        out = self._counters.snapshot()
        out["enqueued"] = out["sent"]
        return out

    # reading
    @property
    def all(self) -> list[dict[str, Any]]:
        """Every event kept."""
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
