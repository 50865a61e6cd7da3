"""Periodic reconciliation: the projections compared with a fresh fold of the ledger, a bounded part per pass.

Every ``reconcile_interval_s`` one pass checks, on a read snapshot (the
writer is never held, so ingest goes on):

* the runs the previous pass found drifted (so drift that persists is seen
  again, and drift that was repaired clears);
* the runs of the ledger entries appended since the previous pass (at most
  the newest ``reconcile_recent_events``): new drift shows within one pass;
* the next ``reconcile_runs_per_pass`` run ids of the whole ledger, in
  run-id order, after where the previous pass stopped; at the end the sweep
  starts again from the first. A hand-edited row anywhere is found within
  one sweep (runs / runs per pass passes).

A pass sets the gauges ``flowledger_projection_drift_count`` (by kind),
``flowledger_projection_sync_latency_ms`` (how long it took) and
``flowledger_last_reconcile_timestamp_seconds``; when some run is found
drifted by two consecutive passes the receiver logs a warning naming a few
of them and the command that repairs them. The pass never repairs by
itself: ``flowledger reconcile --repair`` (or ``POST /api/reconcile``) does.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field

from flowledger.receiver._config import ReceiverConfig
from flowledger.receiver._metrics import Metrics
from flowledger.receiver._periodic import Periodic
from flowledger.receiver.store._integrity import DRIFT_SAMPLES, ReconcileReport, ReconcileScope
from flowledger.receiver.store._protocol import Store

__all__ = ["ReconcileProgress", "Reconciler", "reconcile_pass"]

_log = logging.getLogger("flowledger.receiver")
_MS_PER_S = 1000.0


@dataclass(slots=True)
class ReconcileProgress:
    """Where the periodic passes are: the sweep's position, the ledger seen, the runs last found drifted."""

    sweep_from: str = ""
    ledger_seq: int | None = None
    """The ledger's last entry at the previous pass (None before the first: no recent window yet)."""
    drifted: list[str] = field(default_factory=list)


async def reconcile_pass(
    store: Store, config: ReceiverConfig, metrics: Metrics, progress: ReconcileProgress
) -> ReconcileReport:
    """Run one bounded pass, update the metrics and ``progress``, and warn about drift that persists."""
    started = time.monotonic()
    scope = ReconcileScope(
        run_ids=tuple(progress.drifted),
        recent_after_seq=progress.ledger_seq,
        recent_max_events=config.reconcile_recent_events,
        sweep_from=progress.sweep_from,
        sweep_runs=config.reconcile_runs_per_pass,
    )
    report = await store.reconcile(scope)
    figures = metrics.reconcile
    figures.latency_ms = (time.monotonic() - started) * _MS_PER_S
    figures.drift = {kind.value: tally.count for kind, tally in report.kinds.items()}
    figures.last_timestamp_s = time.time()
    figures.passes += 1
    before = set(progress.drifted)
    persisting = [run_id for run_id in report.drifted if run_id in before]
    if persisting:
        shown = ", ".join(persisting[:DRIFT_SAMPLES]) + (
            f" and {len(persisting) - DRIFT_SAMPLES} more" if len(persisting) > DRIFT_SAMPLES else ""
        )
        _log.warning(
            "projection drift persists over two consecutive reconciliation passes in %d run(s): %s; "
            "repair it with `flowledger reconcile --repair`",
            len(persisting),
            shown,
        )
    progress.drifted = report.drifted
    progress.ledger_seq = report.ledger_seq
    progress.sweep_from = report.sweep_next or ""
    return report


class Reconciler(Periodic):
    """Background task calling :func:`reconcile_pass` every ``reconcile_interval_s`` (never when it is 0)."""

    def __init__(self, store: Store, config: ReceiverConfig, metrics: Metrics) -> None:
        self.progress = ReconcileProgress()
        super().__init__(
            "flowledger-reconciler",
            config.reconcile_interval_s,
            functools.partial(reconcile_pass, store, config, metrics, self.progress),
            doing="reconciling the projections with the ledger",
        )
