"""Events written out off the hot path: the hook hands over what it knows, a sink's worker writes the dict.

On the workflow's thread a hook takes only what must be taken there: the
time, the run's and the producer's sequence numbers (so that order is kept
whichever thread writes the event), and the snapshot of captured payloads.
The rest of an event (its id, its formatted time, the envelope, and for a
node attempt the data dict itself) is made later by the first sink that
needs it, usually the background sender's worker thread, and made once:
every sink is handed the same dict, with the same event id.

``data`` is a dict, or a callable that makes it (a node attempt's bound
method, reading fields that no longer change once the event is emitted).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any

from flowledger._wire import WIRE_VERSION, EventKind, format_ts, new_event_id

__all__ = ["EventData", "PendingEvent", "stamped"]

EventData = dict[str, Any] | Callable[[], dict[str, Any]]
"""An event's data, or what makes it when the event is written out."""

_log = logging.getLogger("flowledger")
_lock = threading.Lock()
_failed_kinds: set[EventKind] = set()


class PendingEvent:
    """One emitted event, not yet written out as the wire's dict (see the module's docstring)."""

    __slots__ = ("_event", "data", "kind", "producer_id", "producer_seq", "project", "run_id", "seq", "ts_ns")

    def __init__(
        self,
        kind: EventKind,
        run_id: str,
        seq: int,
        producer_id: str,
        producer_seq: int,
        ts_ns: int,
        project: str | None,
        data: EventData,
    ) -> None:
        self.kind = kind
        self.run_id = run_id
        self.seq = seq
        self.producer_id = producer_id
        self.producer_seq = producer_seq
        self.ts_ns = ts_ns
        self.project = project
        self.data = data
        self._event: dict[str, Any] | None = None

    def event(self) -> dict[str, Any]:
        """The event as the wire has it; made on the first call, the same dict on every later one."""
        event = self._event
        if event is None:
            with _lock:  # two sinks' workers may ask at once: one event id, whoever asks first
                event = self._event
                if event is None:
                    event = self._event = self._write()
        return event

    def _write(self) -> dict[str, Any]:
        data = self.data
        if not isinstance(data, dict):
            try:
                data = data()
            except Exception:  # never raised on the worker: the event goes out, the receiver says what is missing
                if self.kind not in _failed_kinds:  # logged once per kind
                    _failed_kinds.add(self.kind)
                    _log.warning("flowledger: could not write the data of a %s event", self.kind.value, exc_info=True)
                data = {}
        event: dict[str, Any] = {
            "v": WIRE_VERSION,
            "event_id": new_event_id(),
            "kind": self.kind.value,
            "run_id": self.run_id,
            "seq": self.seq,
            "ts": format_ts(self.ts_ns),
            "producer_id": self.producer_id,
            "producer_seq": self.producer_seq,
            "data": data,
        }
        if self.project is not None:
            event["project"] = self.project
        return event


def stamped(events: Iterable[dict[str, Any] | PendingEvent]) -> list[dict[str, Any]]:
    """The events as dicts, in order (pending ones written out now)."""
    return [event.event() if isinstance(event, PendingEvent) else event for event in events]


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
