"""Receiver metrics in the Prometheus text format (``GET /metrics``).

Counters live in memory for the process's life; the figures that must
survive a restart (runs by status, ledger size, events lost in transit,
silent producers) are read from the store at scrape time.

With API keys on, a key sees its project's figures: those read from the
store (``flowledger_ledger_events`` then counts that project's events) and
the event counters (accepted, duplicate, rejected, conflicting). The
operational series stay the whole receiver's, every project's traffic
together: requests refused by status, write queue depth and refusals,
commit latency, runs marked stuck. They carry no name, id or per-project
figure of another project.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from flowledger.receiver.store._integrity import DriftKind
from flowledger.receiver.store._protocol import Stats

__all__ = ["COMMIT_BUCKETS_S", "EventCounts", "Metrics", "ReconcileFigures"]

COMMIT_BUCKETS_S: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Upper bounds of the commit-latency histogram, in seconds."""


@dataclass(slots=True)
class EventCounts:
    """Events of ingest requests by outcome."""

    accepted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    rejected: int = 0


@dataclass(slots=True)
class ReconcileFigures:
    """The last reconciliation pass: drift by kind, how long it took, when it ended."""

    drift: dict[str, int] = field(default_factory=dict)
    """Drifted runs and attempts by kind (``missing_in_projection``...)."""
    latency_ms: float = 0.0
    """How long the pass took to refold its runs and compare them: how stale a verdict can be."""
    last_timestamp_s: float = 0.0
    """When the last pass ended (seconds since the epoch; 0: none yet)."""
    passes: int = 0


@dataclass(slots=True)
class Metrics:
    """What the receiver counts while it runs."""

    accepted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    rejected: int = 0
    requests_refused: dict[int, int] = field(default_factory=dict)
    """Ingest requests answered with an error status, by status."""
    queue_full: int = 0
    commits: int = 0
    committed_events: int = 0
    commit_seconds_sum: float = 0.0
    commit_buckets: list[int] = field(default_factory=lambda: [0] * len(COMMIT_BUCKETS_S))
    runs_stuck_marked: int = 0
    by_project: dict[str, EventCounts] = field(default_factory=dict)
    """The event counters of each API key project (keys on)."""
    reconcile: ReconcileFigures = field(default_factory=ReconcileFigures)
    """What the last reconciliation pass found."""

    def count_events(
        self, project: str | None, *, accepted: int, duplicates: int, conflicts: int, rejected: int
    ) -> None:
        """Count one ingest request's events, receiver-wide and (with API keys on) for its project."""
        self.accepted += accepted
        self.duplicates += duplicates
        self.conflicts += conflicts
        self.rejected += rejected
        if project is not None:
            counts = self.by_project.setdefault(project, EventCounts())
            counts.accepted += accepted
            counts.duplicates += duplicates
            counts.conflicts += conflicts
            counts.rejected += rejected

    def observe_commit(self, seconds: float, events: int) -> None:
        """Record one writer transaction."""
        self.commits += 1
        self.committed_events += events
        self.commit_seconds_sum += seconds
        for i, bound in enumerate(COMMIT_BUCKETS_S):
            if seconds <= bound:
                self.commit_buckets[i] += 1

    def refused(self, status: int) -> None:
        """Count an ingest request answered with ``status``."""
        self.requests_refused[status] = self.requests_refused.get(status, 0) + 1

    def render(self, stats: Stats, queue_depth: int, *, project: str | None = None) -> str:
        """The whole exposition text; ``project`` (API keys on) picks that project's event counters."""
        lines: list[str] = []
        events: Metrics | EventCounts = self if project is None else self.by_project.get(project, EventCounts())

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            for labels, value in samples:
                lines.append(f"{name}{labels} {value:g}" if isinstance(value, float) else f"{name}{labels} {value}")

        metric("flowledger_events_accepted_total", "counter", "Events stored in the ledger.", [("", events.accepted)])
        metric(
            "flowledger_events_duplicate_total",
            "counter",
            "Events whose event_id was already stored (no-ops).",
            [("", events.duplicates)],
        )
        metric(
            "flowledger_events_rejected_total",
            "counter",
            "Events refused: invalid, conflicting or of another project.",
            [("", events.rejected)],
        )
        metric(
            "flowledger_events_conflict_total",
            "counter",
            "Events whose event_id was stored with different content.",
            [("", events.conflicts)],
        )
        metric(
            "flowledger_ingest_refused_total",
            "counter",
            "Ingest requests answered with an error status.",
            [(f'{{status="{s}"}}', n) for s, n in sorted(self.requests_refused.items())],
        )
        metric("flowledger_write_queue_depth", "gauge", "Requests waiting for the writer.", [("", queue_depth)])
        metric(
            "flowledger_write_queue_full_total",
            "counter",
            "Requests refused with 503 because the write queue was full.",
            [("", self.queue_full)],
        )
        lines.append("# HELP flowledger_commit_seconds Latency of one writer transaction.")
        lines.append("# TYPE flowledger_commit_seconds histogram")
        for bound, count in zip(COMMIT_BUCKETS_S, self.commit_buckets, strict=True):
            lines.append(f'flowledger_commit_seconds_bucket{{le="{bound:g}"}} {count}')
        lines.append(f'flowledger_commit_seconds_bucket{{le="+Inf"}} {self.commits}')
        lines.append(f"flowledger_commit_seconds_sum {self.commit_seconds_sum:.6f}")
        lines.append(f"flowledger_commit_seconds_count {self.commits}")
        metric(
            "flowledger_runs",
            "gauge",
            "Runs in the store by status.",
            [(f'{{status="{s}"}}', n) for s, n in sorted(stats.runs_by_status.items())],
        )
        metric("flowledger_ledger_events", "gauge", "Rows in the ledger.", [("", stats.ledger_events)])
        metric("flowledger_producers", "gauge", "SDK processes that sent events.", [("", stats.producers)])
        metric(
            "flowledger_events_lost",
            "gauge",
            "Events lost in transit: gaps in the producers' sequence numbers "
            "(a lower bound: each producer counts at most as many as it delivered).",
            [("", stats.events_lost)],
        )
        metric(
            "flowledger_producers_with_gaps",
            "gauge",
            "Producers missing at least one sequence number.",
            [("", stats.producers_with_gaps)],
        )
        metric(
            "flowledger_producers_silent_unfinished",
            "gauge",
            "Producers silent for longer than the stuck threshold whose run never finished (a lost tail is possible).",
            [("", stats.producers_silent_unfinished)],
        )
        metric(
            "flowledger_runs_marked_stuck_total",
            "counter",
            "Runs the sweeper marked stuck.",
            [("", self.runs_stuck_marked)],
        )
        if project is None:  # the reconciliation covers every project's runs: the receiver's own view
            reconcile = self.reconcile
            metric(
                "flowledger_projection_drift_count",
                "gauge",
                "Projection rows (runs and node attempts) that disagreed with a fresh fold of the ledger "
                "in the last reconciliation pass, by kind.",
                [(f'{{kind="{kind.value}"}}', reconcile.drift.get(kind.value, 0)) for kind in DriftKind],
            )
            metric(
                "flowledger_projection_sync_latency_ms",
                "gauge",
                "Milliseconds the last reconciliation pass took to refold its runs and compare them.",
                [("", float(reconcile.latency_ms))],
            )
            metric(
                "flowledger_last_reconcile_timestamp_seconds",
                "gauge",
                "When the last reconciliation pass ended, in seconds since the epoch (0: none yet).",
                [("", int(reconcile.last_timestamp_s))],
            )
            metric(
                "flowledger_reconcile_passes_total",
                "counter",
                "Reconciliation passes run.",
                [("", reconcile.passes)],
            )
        return "\n".join(lines) + "\n"
