"""The event as the store takes it: validated, normalised, with its canonical encoding."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowledger._wire import EventKind

__all__ = ["PreparedEvent"]


@dataclass(slots=True)
class PreparedEvent:
    """A valid event, ready for the writer."""

    index: int
    """Position in its request's batch."""
    event_id: str
    run_id: str
    kind: EventKind
    ts: str
    """The event's timestamp normalised to ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    started_at: str | None
    """``data.started_at`` normalised the same way, when the event has one."""
    project: str | None
    producer_id: str
    producer_seq: int
    data: dict[str, Any]
    body: str
    """Canonical JSON text of the event (what the ledger stores)."""
    body_bytes: bytes
    """``body`` encoded as UTF-8 (what the hash chain covers)."""
    seq: int = 0
    """Ledger position, set by the store when the event is appended."""
    blobs: tuple[tuple[str, str], ...] = ()
    """``(sha256, JSON text)`` of the payloads captured in full, taken out of ``data`` (see ``_blobs``)."""
    plain_floats: bool = False
    """Every float of the event is one orjson writes as ``json`` does (its batch's decoder said so)."""
