"""The ``Store`` plug-in point: what the receiver needs from a database engine.

SQLite (:mod:`flowledger.receiver.store._sqlite`) is the embedded default; another
engine (PostgreSQL, for many receivers sharing one database) implements the
same protocol. Only the writer task calls the write methods
(:meth:`Store.append`, :meth:`Store.sweep`, :meth:`Store.rebuild`); the query
methods may run concurrently with it.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from flowledger._wire import RunStatus
from flowledger.receiver.otlp._spans import SpanRow, TraceLinks
from flowledger.receiver.store._event import PreparedEvent

__all__ = [
    "Drift",
    "EventOutcome",
    "RunPage",
    "RunQuery",
    "Stats",
    "Store",
    "VerifyReport",
]


class EventOutcome(enum.Enum):
    """What became of one event handed to :meth:`Store.append`."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    """Its event_id was stored already with the same content: nothing changed."""
    CONFLICT = "conflict"
    """Its event_id was stored already with different content: refused."""
    FORBIDDEN = "forbidden"
    """It belongs to a run of another project: refused."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunQuery:
    """Filters and paging of a run listing (newest first)."""

    workflow_id: str | None = None
    status: RunStatus | None = None
    project: str | None = None
    """Set from the API key: only this project's runs are visible."""
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True, slots=True)
class RunPage:
    """One page of runs and the total that match the filters."""

    runs: list[dict[str, Any]]
    total: int


@dataclass(frozen=True, slots=True)
class Stats:
    """Figures for ``/metrics`` read from the database."""

    runs_by_status: dict[str, int]
    ledger_events: int
    producers: int
    events_lost: int
    """Gaps in the producers' sequence numbers: events that never arrived (or have not yet)."""


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Result of walking the hash chain."""

    ok: bool
    events: int
    """Rows checked."""
    head_seq: int
    head_hash: str
    """Hex hash of the last good row (the chain's head when ``ok``)."""
    first_bad_seq: int | None = None
    first_bad_event_id: str | None = None
    problem: str | None = None


@dataclass(slots=True)
class Drift:
    """What a rebuild changed: rows whose refolded state differs from the stored projection."""

    events: int = 0
    runs_changed: list[str] = field(default_factory=list)
    runs_missing: list[str] = field(default_factory=list)
    """In the ledger but absent from the old projection."""
    runs_extra: list[str] = field(default_factory=list)
    """In the old projection but not backed by any ledger event."""
    nodes_changed: int = 0
    nodes_missing: int = 0
    nodes_extra: int = 0

    @property
    def clean(self) -> bool:
        """Whether the projection matched the ledger exactly."""
        return not (
            self.runs_changed
            or self.runs_missing
            or self.runs_extra
            or self.nodes_changed
            or self.nodes_missing
            or self.nodes_extra
        )

    def as_json(self) -> dict[str, Any]:
        """A JSON-safe summary."""
        return {
            "events": self.events,
            "clean": self.clean,
            "runs_changed": self.runs_changed,
            "runs_missing": self.runs_missing,
            "runs_extra": self.runs_extra,
            "nodes_changed": self.nodes_changed,
            "nodes_missing": self.nodes_missing,
            "nodes_extra": self.nodes_extra,
        }


class Store(Protocol):
    """A database engine behind the receiver."""

    async def open(self) -> None:
        """Connect, migrate, and load the chain's head."""

    async def close(self) -> None:
        """Release every connection; idempotent."""

    async def append(self, events: Sequence[PreparedEvent]) -> list[tuple[EventOutcome, str | None]]:
        """Store new events in one transaction: ledger rows, projections, producer counts.

        Returns, per event in order, its outcome and (for a refusal) a reason.
        """
        ...

    async def sweep(self, *, now: str, stuck_after_s: float, heartbeats: int) -> list[str]:
        """Mark running runs without a sign of life as stuck; return their ids."""
        ...

    async def rebuild(self) -> Drift:
        """Drop and refold every projection from the ledger; report the drift found."""
        ...

    async def list_runs(self, query: RunQuery) -> RunPage:
        """A page of runs, newest first."""
        ...

    async def get_run(self, run_id: str, *, project: str | None = None) -> dict[str, Any] | None:
        """One run with its node attempts in start order, or None."""
        ...

    def iter_runs(self, query: RunQuery, *, with_nodes: bool) -> AsyncIterator[dict[str, Any]]:
        """Every matching run, newest first, streamed (``limit``/``offset`` ignored)."""
        ...

    async def stats(self) -> Stats:
        """Figures for the metrics endpoint."""
        ...

    async def verify(self, checkpoints: Sequence[tuple[int, str]] = ()) -> VerifyReport:
        """Walk the hash chain from the first row; also check ``(seq, hex hash)`` checkpoints."""
        ...

    async def store_spans(self, spans: Sequence[SpanRow]) -> int:
        """Store OTLP spans once per (trace_id, span_id) in one transaction; return how many were new.

        A writer-side method: call it through ``Writer.call``.
        """
        ...

    async def get_trace(self, trace_id: str, *, project: str | None = None) -> tuple[list[dict[str, Any]], TraceLinks]:
        """The stored spans of one trace in start order, and the runs and node attempts they belong to."""
        ...
