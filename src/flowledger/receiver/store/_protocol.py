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
from typing import Any, Final, Protocol

from flowledger._wire import RunStatus
from flowledger.receiver.store._custom_metrics import CustomMetricQuery
from flowledger.receiver.store._entry import entry_leaf
from flowledger.receiver.store._error_groups import ErrorGroupQuery
from flowledger.receiver.store._event import PreparedEvent
from flowledger.receiver.store._integrity import CoverageQuery, CoverageReport, ReconcileReport, ReconcileScope
from flowledger.receiver.store._logs import LOG_PAGE_MAX, AttemptLogs, LogDrop, LogRow
from flowledger.receiver.store._otlp_logs import OtlpLogRow
from flowledger.receiver.store._otlp_metrics import MetricPointRow, MetricsOutcome
from flowledger.receiver.store._run_filter import RunContextFilter
from flowledger.receiver.store._spans import SpanRow, TraceLinks
from flowledger.receiver.store._stats import StatsQuery
from flowledger.receiver.store._views import (
    PERCENTILE_SAMPLE_MAX,
    PageDirection,
    PayloadKind,
    RunFilter,
    RunListPage,
    RunPageCursor,
)

__all__ = [
    "TOTAL_COUNT_MAX",
    "DailyTotal",
    "Drift",
    "EntryProof",
    "EventOutcome",
    "PurgeReport",
    "PurgeSelection",
    "RunPage",
    "RunQuery",
    "Stats",
    "Store",
    "TreeHead",
    "VerifyReport",
]


TOTAL_COUNT_MAX: Final = 10_000
"""A run listing counts its matching runs up to this many; past it the total says "at least" (``total_capped``)."""


class EventOutcome(enum.Enum):
    """What became of one event handed to :meth:`Store.append`."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    """Its event_id was stored already with the same content: nothing changed."""
    CONFLICT = "conflict"
    """Its event_id was stored already with different content: refused."""
    UNSTORABLE = "unstorable"
    """It holds a value the store cannot keep: refused (the writer decides this, not the store)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunQuery:
    """Filters and paging of a run listing (newest first)."""

    workflow_id: str | None = None
    statuses: tuple[RunStatus, ...] = ()
    """Runs in any of these statuses (every status when empty)."""
    project: str | None = None
    """Set from the API key: only this project's runs are visible."""
    limit: int = 50
    offset: int = 0
    """Runs to skip before the page (its cost grows with it; ``cursor`` does not)."""
    cursor: RunPageCursor | None = None
    """Start right after this run (a :attr:`RunPage.next`): a keyset page, as cheap at any depth.
    ``offset`` then counts from the cursor."""
    search: str | None = None
    """Only runs whose errors, log lines or payload text hold every word (``word*``: a prefix)."""
    attributes: tuple[tuple[str, str], ...] = ()
    """Only runs that started with each of these ``(key, value)`` attributes (values compared as text)."""
    run_id_prefix: str | None = None
    """Only runs whose id starts with this (a range of the primary key)."""
    context: RunContextFilter = field(default_factory=RunContextFilter)
    """Project asked for, user, agent, intent, parent run and start-time range."""


@dataclass(frozen=True, slots=True)
class RunPage:
    """One page of runs, the (capped) total that match the filters, and where the next page starts."""

    runs: list[dict[str, Any]]
    total: int
    """How many runs match, counted up to TOTAL_COUNT_MAX (then exactly that, with ``total_capped``)."""
    total_capped: bool = False
    """The count stopped at TOTAL_COUNT_MAX: at least ``total`` runs match."""
    next: RunPageCursor | None = None
    """The position after the page's last run, when more runs follow; None on the last page."""


@dataclass(frozen=True, slots=True)
class Stats:
    """Figures for ``/metrics`` read from the database."""

    runs_by_status: dict[str, int]
    ledger_events: int
    producers: int
    events_lost: int
    """Gaps in the producers' sequence numbers: events that never arrived (or have not yet).

    Each producer counts at most as many lost events as it delivered, so one
    producer's huge ``producer_seq`` cannot blow the figure up: a lower bound.
    """
    producers_with_gaps: int = 0
    """Producers missing at least one sequence number (each counts once, however large its gap)."""
    producers_silent_unfinished: int = 0
    """Producers whose newest event is older than the cutoff and whose run never finished: a tail may be lost."""


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
    purges: int = 0
    """Purge entries in the ledger."""
    runs_purged: int = 0
    """Runs those purges erased."""
    payloads_erased: int = 0
    """Entries whose payload is gone (each covered by a purge)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgeSelection:
    """Which runs a purge erases: listed ids, a workflow's runs, or runs started before a time (or both)."""

    run_ids: tuple[str, ...] = ()
    workflow_id: str | None = None
    before: str | None = None
    """Only runs started before this time (RFC 3339 UTC, normalised)."""
    keep_newest: int | None = None
    """With ``workflow_id``: spare the newest N runs of the workflow (retention by count)."""
    finished_only: bool = False
    """Spare runs still running (retention never erases a live run)."""
    project: str | None = None
    """Only runs of this project (set from the API key, or by a per-project policy)."""
    limit: int | None = None
    """At most this many runs, oldest first (retention passes are bounded)."""
    by: str
    """Who asked, recorded in the purge entry: ``cli``, ``api key of project P``, ``retention policy ...``."""


@dataclass(frozen=True, slots=True)
class PurgeReport:
    """What a purge erased."""

    runs: list[str]
    """The purged run ids, sorted."""
    events: int
    """Ledger entries whose payload was erased."""
    purge_seq: int | None
    """The purge's own ledger entry (None when nothing matched: no entry is written)."""

    def as_json(self) -> dict[str, Any]:
        """A JSON-safe summary."""
        return {"runs": self.runs, "events": self.events, "purge_seq": self.purge_seq}


@dataclass(frozen=True, slots=True)
class DailyTotal:
    """Runs of one workflow, project, UTC day and status: live runs and purged ones together."""

    workflow_id: str
    project: str
    day: str
    """``YYYY-MM-DD`` of the runs' start."""
    status: str
    runs: int
    cost_usd: float
    duration_ms_sum: float
    durations: int
    """Runs with a duration (the denominator of an average)."""
    duration_ms_max: float | None


@dataclass(frozen=True, slots=True)
class TreeHead:
    """The ledger's Merkle tree: its size (entries) and root hash."""

    size: int
    root: bytes


@dataclass(frozen=True, slots=True)
class EntryProof:
    """One ledger entry, its payload (None when purged) and its audit path in a tree of a given size."""

    seq: int
    entry: bytes
    prev_hash: bytes
    """The hash of the entry before it: with the entry, a format-3 entry's leaf data (see ``store._entry``)."""
    payload: bytes | None
    path: list[bytes]

    @property
    def leaf(self) -> bytes:
        """The entry's Merkle leaf hash, which ``path`` proves (see ``store._entry.entry_leaf``)."""
        return entry_leaf(self.prev_hash, self.entry)


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
    """A database engine behind the receiver.

    Every method, reads included, raises StoreError (never the driver's own exception) when the
    database cannot be reached or the connection drops part way (a server restarting): the
    receiver answers 503 with Retry-After, the CLI prints one ``error:`` line. An engine
    translates those failures in one place, where it hands out connections.
    """

    async def open(self) -> None:
        """Connect, migrate, and load the chain's head."""

    async def close(self) -> None:
        """Release every connection; idempotent."""

    async def append(self, events: Sequence[PreparedEvent]) -> list[tuple[EventOutcome, str | None]]:
        """Store new events in one transaction: ledger rows, projections, producer counts.

        Returns, per event in order, its outcome and (for a refusal) a reason.
        Raises UnstorableError when an event holds a value the engine cannot
        keep (nothing is stored then), StoreError for a failure worth retrying.
        """
        ...

    async def sweep(self, *, now: str, stuck_after_s: float, heartbeats: int) -> list[str]:
        """Mark running runs without a sign of life as stuck; return their ids."""
        ...

    async def rebuild(self) -> Drift:
        """Drop and refold every projection from the ledger; report the drift found."""
        ...

    async def purge(self, selection: PurgeSelection) -> PurgeReport:
        """Erase the selected runs' payloads, projection rows and spans; record the purge as a ledger entry.

        Their daily totals move to a projection that survives (see :meth:`daily_totals`).
        A writer-side method: call it through ``Writer.call``.
        """
        ...

    async def daily_totals(self, *, project: str | None = None, workflow_id: str | None = None) -> list[DailyTotal]:
        """Runs per workflow, project, UTC day and status, purged runs included; by day, workflow, status."""
        ...

    async def run_stats(self, query: StatsQuery) -> list[dict[str, Any]]:
        """Statistics per group (:mod:`._stats`), most runs first, as ``GET /api/stats`` has them."""
        ...

    async def error_groups(self, query: ErrorGroupQuery) -> list[dict[str, Any]]:
        """Error groups (:mod:`._error_groups`) matching ``query``, biggest first, as ``GET /api/errors`` has them."""
        ...

    async def tree_head(self) -> TreeHead:
        """The size and root hash of the ledger's Merkle tree now."""
        ...

    async def consistency_proof(self, old_size: int) -> tuple[TreeHead, list[bytes]]:
        """The tree head now and the RFC 9162 proof that the tree of ``old_size`` entries is its prefix.

        The proof is empty when the tree is not larger than ``old_size`` (compare the sizes first).
        """
        ...

    async def run_proof(self, run_id: str, tree_size: int, *, project: str | None = None) -> list[EntryProof]:
        """A run's entries among the first ``tree_size``, with payloads and audit paths in that tree."""
        ...

    def iter_run_proof(
        self, run_id: str, tree_size: int, *, project: str | None = None
    ) -> AsyncIterator[list[EntryProof]]:
        """:meth:`run_proof` a chunk of entries at a time, in seq order (none when the run has no entry there), so
        that a proof costs a chunk's memory whatever the run's size; a StoreError whose cause is a LookupError
        when the tree is smaller than ``tree_size``."""
        ...

    async def list_runs(self, query: RunQuery) -> RunPage:
        """A page of runs, newest first, with ``next`` when more follow and a total capped at TOTAL_COUNT_MAX.

        With ``query.cursor`` the page starts after that run at a cost that does not grow with depth.
        """
        ...

    async def get_run(self, run_id: str, *, project: str | None = None) -> dict[str, Any] | None:
        """One run with its node attempts in start order, or None."""
        ...

    def iter_runs(self, query: RunQuery, *, with_nodes: bool) -> AsyncIterator[dict[str, Any]]:
        """Every matching run, newest first, streamed (``limit``/``offset`` ignored).

        A connection lost part way raises StoreError from the iteration, after the runs already yielded.
        """
        ...

    async def stats(self, *, project: str | None = None, silent_before: str | None = None) -> Stats:
        """Figures for the metrics endpoint; ``project`` scopes them to one project's runs and producers.

        ``silent_before`` (a normalised timestamp) is the cutoff of ``producers_silent_unfinished``
        (0 without one).
        """
        ...

    async def verify(self, checkpoints: Sequence[tuple[int, str]] = ()) -> VerifyReport:
        """Walk the hash chain from the first row; also check ``(seq, hex hash)`` checkpoints."""
        ...

    async def store_spans(self, spans: Sequence[SpanRow]) -> int:
        """Store OTLP spans once per (trace_id, span_id, project) in one transaction; return how many were new.

        The project is part of the key: a span another project sent first with the same ids hides nothing.

        A writer-side method: call it through ``Writer.call``.
        """
        ...

    async def sampled_out(self, *, project: str | None = None) -> dict[str, int]:
        """Runs dropped by sampling, per workflow id (``project`` scopes them to one project)."""
        ...

    async def append_logs(self, rows: Sequence[LogRow], drops: Sequence[LogDrop] = ()) -> int:
        """Store log lines of runs and node attempts (and what their capture dropped) in one transaction.

        Each row names its run and attempt (``span_id``; None for the run itself); OTLP lines come
        with ``source=LogSource.OTLP`` and are kept by a rebuild. Returns how many rows were stored.

        A writer-side method: call it through ``Writer.call``.
        """
        ...

    async def attempt_logs(
        self,
        run_id: str,
        span_id: str | None,
        *,
        project: str | None = None,
        min_level: int = 0,
        after_id: int = 0,
        limit: int = LOG_PAGE_MAX,
    ) -> AttemptLogs | None:
        """One attempt's log lines in arrival order (ids above ``after_id``, level at least ``min_level``).

        None when the run is unknown (or another project's).
        """
        ...

    async def get_trace(self, trace_id: str, *, project: str | None = None) -> tuple[list[dict[str, Any]], TraceLinks]:
        """The stored spans of one trace in start order, and the runs and node attempts they belong to."""
        ...

    # --- the viewer's queries (see flowledger.receiver.store._views) ---------

    async def ledger_size(self) -> int:
        """The sequence number of the last ledger row (0 for an empty ledger): it grows with every append."""
        ...

    async def viewer_runs(
        self,
        run_filter: RunFilter,
        *,
        limit: int,
        cursor: RunPageCursor | None = None,
        direction: PageDirection = PageDirection.OLDER,
    ) -> RunListPage:
        """A keyset page of ``limit`` runs next to ``cursor`` (the newest runs without one), newest first."""
        ...

    async def run_summary(
        self, run_filter: RunFilter, *, percentile_sample_max: int = PERCENTILE_SAMPLE_MAX
    ) -> dict[str, Any]:
        """Summary cards over every run the filter matches (counts, success rate, p50/p95, cost, last run)."""
        ...

    async def facets(self, *, project: str | None) -> dict[str, Any]:
        """What the filter controls offer: workflows seen, trigger types, statuses, modes."""
        ...

    async def run_header(self, run_id: str, *, project: str | None) -> dict[str, Any] | None:
        """One run without its nodes: fields, small payloads and an overview of its attempts; None if unknown."""
        ...

    async def attempts_page(
        self, run_id: str, *, project: str | None, offset: int, limit: int
    ) -> dict[str, Any] | None:
        """Node attempts ``offset`` to ``offset + limit`` of a run in start order, without payloads."""
        ...

    async def attempt_detail(self, run_id: str, span_id: str, *, project: str | None) -> dict[str, Any] | None:
        """One node attempt with its payloads (large ones listed in ``deferred``); None if unknown."""
        ...

    async def node_payload(self, run_id: str, span_id: str, kind: PayloadKind, *, project: str | None) -> str | None:
        """One payload of a node attempt as stored JSON text; QueryError for an unknown ``kind``."""
        ...

    async def run_payload(self, run_id: str, kind: PayloadKind, *, project: str | None) -> str | None:
        """The input or output of a run as stored JSON text; QueryError for ``kind`` not one of a run's."""
        ...

    # --- integrity (see flowledger.receiver.store._integrity) ----------------

    async def coverage(self, query: CoverageQuery) -> CoverageReport:
        """Runs and producer sessions missing core events, counted exactly, with a few samples of each kind."""
        ...

    async def reconcile(self, scope: ReconcileScope, *, repair: bool = False) -> ReconcileReport:
        """Compare the projection rows of the runs in ``scope`` with a fresh fold of their ledger events.

        Without ``repair`` it only reads (a snapshot per chunk of runs). With it, the drifted runs'
        rows are rewritten from the fold: a writer-side method then (call it through ``Writer.call``).
        """

    async def resume_evidence(self, run_id: str, *, project: str | None = None) -> dict[str, Any] | None:
        """What resuming ``run_id`` needs: its trigger data and each node's last outcome, complete outputs
        checked against the ledger (blob hash, payload hash, chain and Merkle inclusion); None when unknown
        (or another project's). See :mod:`._evidence`."""
        ...

    async def resume_chain(self, run_id: str, *, project: str | None = None) -> list[dict[str, Any]] | None:
        """The chain of attempts ``run_id`` is part of: the original run, then each resume after the run it resumes."""

    # --- OTLP logs and metrics (see store._otlp_logs and store._otlp_metrics) ---

    async def store_metric_points(
        self, points: Sequence[MetricPointRow], *, max_series: int, max_points: int
    ) -> MetricsOutcome:
        """Store OTLP metric points once per (series, time) in one transaction, keeping both tables bounded.

        A writer-side method: call it through ``Writer.call``.
        """
        ...

    async def metric_series(
        self,
        *,
        name: str | None,
        project: str | None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        max_series: int,
        max_points: int,
    ) -> list[dict[str, Any]]:
        """Stored series (of metric ``name`` with their points, or all without points)."""
        ...

    async def store_logs(self, rows: Sequence[OtlpLogRow], *, max_records: int) -> int:
        """Store OTLP log records once each in one transaction, keeping at most ``max_records``; return the new.

        A writer-side method: call it through ``Writer.call``.
        """
        ...

    async def link_otlp_logs(self, *, since: str) -> int:
        """Copy OTLP log records received at ``since`` or later whose run is now known beside its lines.

        A writer-side method: call it through ``Writer.call``.
        """
        ...

    async def otlp_logs(
        self, *, trace_id: str | None = None, run_id: str | None = None, project: str | None, limit: int
    ) -> list[dict[str, Any]] | None:
        """OTLP log records of a trace (or of a run's trace) with the run and node attempt each belongs to.

        None when ``run_id`` names no stored run of the project.
        """
        ...

    async def custom_metrics(self, query: CustomMetricQuery) -> list[dict[str, Any]]:
        """Custom metric totals by workflow, node, name, labels and hour, newest hour first."""
        ...
