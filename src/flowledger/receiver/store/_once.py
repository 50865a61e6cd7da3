"""Exactly once: which events of a commit group are new, by project, event id and payload hash (every engine)."""

from __future__ import annotations

from collections.abc import Sequence

from flowledger.receiver.store._event import PreparedEvent
from flowledger.receiver.store._protocol import EventOutcome

__all__ = ["new_events"]


def new_events(
    events: Sequence[PreparedEvent],
    digests: Sequence[bytes],
    stored: dict[tuple[str, str], bytes],
    results: list[tuple[EventOutcome, str | None]],
) -> list[int]:
    """The indexes of the events to store, in order.

    ``digests`` are the events' payload hashes, ``stored`` maps ``(project
    or '', event_id)`` to the payload hash of the events already stored (it
    gains the new ones, so a repeat within the group is a duplicate too).
    An event already stored with the same payload is marked a duplicate in
    ``results``, one with another payload a conflict.
    """
    fresh: list[int] = []
    for i, event in enumerate(events):
        key = (event.project or "", event.event_id)  # an event is (project, event_id)
        prior = stored.get(key)
        if prior is None:
            stored[key] = digests[i]
            fresh.append(i)
        elif prior == digests[i]:
            results[i] = (EventOutcome.DUPLICATE, None)
        else:
            results[i] = (
                EventOutcome.CONFLICT,
                f"event_id {event.event_id} is taken by a different event; give each event a new id",
            )
    return fresh
