"""What the integrity checks ask and answer: coverage (are the core events there?) and reconciliation
(do the projections match a fresh fold of the ledger?).

Plain records, shared by the store that computes them, the routes that serve
them and the CLI that prints them; the SQL lives in :mod:`._coverage` and
:mod:`._reconcile`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "COVERAGE_SAMPLES",
    "DEADLINE_GRACE_S",
    "DRIFTED_KEPT",
    "DRIFT_SAMPLES",
    "CoverageKind",
    "CoverageQuery",
    "CoverageReport",
    "CoverageStatus",
    "DriftKind",
    "DriftTally",
    "KindTally",
    "ReconcileReport",
    "ReconcileScope",
]

COVERAGE_SAMPLES: Final = 5
"""Samples a coverage report lists per kind (the counts are exact, the samples are the oldest few)."""
DRIFT_SAMPLES: Final = 5
"""Sample ids a reconciliation report lists per kind."""
DEADLINE_GRACE_S: Final = 60.0
"""A run still unfinished this long past its deadline (``limits.deadline_s``) misses its ``run_finished``."""


class CoverageStatus(enum.StrEnum):
    """The verdict of a coverage check."""

    PASS = "PASS"
    FAIL_CORE_MISSING = "FAIL_CORE_MISSING"


class CoverageKind(enum.StrEnum):
    """A way the record of a run can be incomplete."""

    RUN_FINISHED_MISSING = "run_finished_missing"
    """Running (or stuck) past its heartbeat threshold or its deadline, with no ``run_finished``."""
    RUN_STARTED_MISSING = "run_started_missing"
    """Events of the run arrived, its ``run_started`` did not."""
    NODE_FINISHED_MISSING = "node_finished_missing"
    """A node attempt started and never finished, in a run that finished."""
    PRODUCER_SEQ_GAP = "producer_seq_gap"
    """A producer session (one SDK process) is missing sequence numbers: events lost in transit."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CoverageQuery:
    """Which runs a coverage check looks at, and when a silent run counts as unfinished."""

    now: str
    """The check's clock (normalised timestamp)."""
    stuck_after_s: float
    """A run silent longer than this (or than three of its own heartbeat intervals) should have finished."""
    heartbeats: int = 3
    since: str | None = None
    """Only runs started (producers heard from) at or after this time."""
    workflow_id: str | None = None
    project: str | None = None
    """Set from the API key: only this project's runs and producers."""


@dataclass(slots=True)
class KindTally:
    """How many records of one kind were found, and a few of them."""

    count: int = 0
    samples: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """A JSON-safe summary."""
        return {"count": self.count, "samples": self.samples}


@dataclass(slots=True)
class CoverageReport:
    """What a coverage check found."""

    checked_at: str
    kinds: dict[CoverageKind, KindTally] = field(default_factory=lambda: {k: KindTally() for k in CoverageKind})
    events_missing: int = 0
    """Sequence numbers the producers with gaps are missing (each producer counts at most as many as it sent)."""

    @property
    def sessions_with_gaps(self) -> int:
        """Producer sessions missing at least one sequence number."""
        return self.kinds[CoverageKind.PRODUCER_SEQ_GAP].count

    @property
    def status(self) -> CoverageStatus:
        """PASS when nothing is missing."""
        missing = any(tally.count for tally in self.kinds.values())
        return CoverageStatus.FAIL_CORE_MISSING if missing else CoverageStatus.PASS

    def as_json(self) -> dict[str, Any]:
        """A JSON-safe summary."""
        return {
            "status": self.status.value,
            "sessions_with_gaps": self.sessions_with_gaps,
            "events_missing": self.events_missing,
            "checked_at": self.checked_at,
            "kinds": {kind.value: tally.as_json() for kind, tally in self.kinds.items()},
        }

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> CoverageReport:
        """The report a receiver answered (``GET /api/coverage``)."""
        report = cls(checked_at=str(body["checked_at"]), events_missing=int(body.get("events_missing", 0)))
        for kind in CoverageKind:
            raw = body["kinds"].get(kind.value, {})
            report.kinds[kind] = KindTally(count=int(raw.get("count", 0)), samples=list(raw.get("samples", [])))
        return report


class DriftKind(enum.StrEnum):
    """How a projection row can disagree with a fresh fold of the ledger."""

    MISSING_IN_PROJECTION = "missing_in_projection"
    """The ledger folds to a run (or attempt) the projection lacks."""
    MISSING_IN_LEDGER = "missing_in_ledger"
    """The projection holds a run (or attempt) no stored event backs."""
    STATUS_MISMATCH = "status_mismatch"
    """Both have it, with different statuses (the sweeper's ``stuck`` over a folded ``running`` is no drift)."""
    FIELD_MISMATCH = "field_mismatch"
    """Both have it with the same status, and another column differs."""


@dataclass(slots=True)
class DriftTally:
    """Drifted runs and node attempts of one kind, with the first few ids (``run_id``, ``run_id/span_id``)."""

    runs: int = 0
    attempts: int = 0
    samples: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Runs and attempts together."""
        return self.runs + self.attempts

    def add(self, sample: str, *, attempt: bool) -> None:
        """Count one drifted record."""
        if attempt:
            self.attempts += 1
        else:
            self.runs += 1
        if len(self.samples) < DRIFT_SAMPLES:
            self.samples.append(sample)

    def as_json(self) -> dict[str, Any]:
        """A JSON-safe summary."""
        return {"count": self.count, "runs": self.runs, "attempts": self.attempts, "samples": self.samples}


DRIFTED_KEPT: Final = 1000
"""Drifted run ids a report keeps (for the next periodic pass to check again); the counts go on past it."""


@dataclass(slots=True)
class ReconcileReport:
    """What a reconciliation found (and, with repair, rewrote)."""

    runs_checked: int = 0
    events_folded: int = 0
    kinds: dict[DriftKind, DriftTally] = field(default_factory=lambda: {k: DriftTally() for k in DriftKind})
    repaired: int = 0
    """Runs whose projection rows were rewritten from the fold."""
    drifted: list[str] = field(default_factory=list)
    """The drifted run ids, up to DRIFTED_KEPT."""
    sweep_next: str | None = None
    """Where the next slice of an incremental sweep starts (None: the sweep reached the end)."""
    ledger_seq: int = 0
    """The ledger's last entry when the check began."""

    @property
    def drift_count(self) -> int:
        """Drifted runs and attempts of every kind."""
        return sum(tally.count for tally in self.kinds.values())

    @property
    def clean(self) -> bool:
        """Whether every checked row matched the fold."""
        return self.drift_count == 0

    def note_drifted(self, run_id: str) -> None:
        """Remember a drifted run (once, up to DRIFTED_KEPT)."""
        if len(self.drifted) < DRIFTED_KEPT and run_id not in self.drifted:
            self.drifted.append(run_id)

    def merge(self, other: ReconcileReport) -> None:
        """Add the findings of the next slice of the same check (counts add up, samples fill to DRIFT_SAMPLES)."""
        self.runs_checked += other.runs_checked
        self.events_folded += other.events_folded
        self.repaired += other.repaired
        for kind, tally in other.kinds.items():
            mine = self.kinds[kind]
            mine.runs += tally.runs
            mine.attempts += tally.attempts
            mine.samples = (mine.samples + tally.samples)[:DRIFT_SAMPLES]
        for run_id in other.drifted:
            self.note_drifted(run_id)
        self.sweep_next = other.sweep_next
        self.ledger_seq = max(self.ledger_seq, other.ledger_seq)

    def as_json(self) -> dict[str, Any]:
        """A JSON-safe summary; ``next`` is where the following slice of a sweep starts (null at its end)."""
        return {
            "clean": self.clean,
            "drift_count": self.drift_count,
            "runs_checked": self.runs_checked,
            "events_folded": self.events_folded,
            "repaired": self.repaired,
            **{kind.value: tally.as_json() for kind, tally in self.kinds.items()},
            "next": self.sweep_next,
        }

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ReconcileReport:
        """The report a receiver answered (``/api/reconcile``)."""
        report = cls(
            runs_checked=int(body["runs_checked"]),
            events_folded=int(body["events_folded"]),
            repaired=int(body.get("repaired", 0)),
            sweep_next=body.get("next"),
        )
        for kind in DriftKind:
            raw = body.get(kind.value, {})
            report.kinds[kind] = DriftTally(
                runs=int(raw.get("runs", 0)), attempts=int(raw.get("attempts", 0)), samples=list(raw.get("samples", []))
            )
        return report


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconcileScope:
    """Which runs one reconciliation checks: named runs, the runs of recent ledger entries, a slice of all."""

    run_ids: tuple[str, ...] = ()
    recent_after_seq: int | None = None
    """Also the runs of ledger entries after this one..."""
    recent_max_events: int = 0
    """...at most this many of the newest entries."""
    sweep_from: str | None = None
    """Also every run id after this one (``""``: from the first) in run-id order..."""
    sweep_runs: int | None = None
    """...at most this many of them (None: to the end)."""
    project: str | None = None
    """Set from the API key: only this project's runs."""

    @classmethod
    def everything(cls, *, project: str | None = None) -> ReconcileScope:
        """Every run of the ledger and of the projection."""
        return cls(sweep_from="", project=project)
