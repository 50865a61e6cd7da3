"""Retention: a background task that purges runs past the configured policies, a bounded number per pass.

Every ``retention_interval_s`` the task applies each :class:`~flowledger.receiver._config.RetentionPolicy`
through :meth:`~flowledger.receiver.store._protocol.Store.purge` on the writer:
finished runs started longer ago than ``max_age_s``, and, per workflow, the
finished runs beyond the newest ``max_runs_per_workflow``. One pass purges at
most ``retention_max_runs_per_pass`` runs, oldest first, so the writer is
held briefly and ingest goes on; what is left waits for the next pass. Each
purge is a ledger entry naming the policy.
"""

from __future__ import annotations

import functools
import logging
import time

from flowledger._wire import format_ts
from flowledger.receiver._config import ReceiverConfig, RetentionPolicy
from flowledger.receiver._periodic import Periodic
from flowledger.receiver._writer import Writer
from flowledger.receiver.store._protocol import PurgeReport, PurgeSelection, Store

__all__ = ["Retention", "retention_pass"]

_log = logging.getLogger("flowledger.receiver")
_NS_PER_S = 1_000_000_000


async def _purge(store: Store, writer: Writer, selection: PurgeSelection) -> PurgeReport:
    report: PurgeReport = await writer.call(lambda: store.purge(selection))
    return report


async def _apply(store: Store, writer: Writer, policy: RetentionPolicy, budget: int, now_ns: int) -> int:
    """Apply one policy within ``budget`` runs; return how many runs it purged."""
    purged = 0
    if policy.max_age_s is not None:
        cutoff = format_ts(now_ns - int(policy.max_age_s * _NS_PER_S))
        selection = PurgeSelection(
            before=cutoff, limit=budget, project=policy.project, finished_only=True, by=policy.describe()
        )
        purged += len((await _purge(store, writer, selection)).runs)
    if policy.max_runs_per_workflow is not None:
        workflows = (await store.facets(project=policy.project))["workflows"]
        for workflow_id in workflows:
            if budget <= purged:
                break
            selection = PurgeSelection(
                workflow_id=workflow_id,
                keep_newest=policy.max_runs_per_workflow,
                limit=budget - purged,
                project=policy.project,
                finished_only=True,
                by=policy.describe(),
            )
            purged += len((await _purge(store, writer, selection)).runs)
    return purged


async def retention_pass(store: Store, writer: Writer, config: ReceiverConfig) -> int:
    """Apply every policy once, purging at most ``retention_max_runs_per_pass`` runs; return how many."""
    budget = config.retention_max_runs_per_pass
    now_ns = time.time_ns()
    purged = 0
    for policy in config.retention:
        if purged >= budget:
            break
        purged += await _apply(store, writer, policy, budget - purged, now_ns)
    if purged:
        _log.info("retention purged %d run(s)", purged)
    return purged


class Retention(Periodic):
    """Background task calling :func:`retention_pass` every ``retention_interval_s`` (never without policies)."""

    def __init__(self, store: Store, writer: Writer, config: ReceiverConfig) -> None:
        super().__init__(
            "flowledger-retention",
            config.retention_interval_s if config.retention else 0.0,
            functools.partial(retention_pass, store, writer, config),
            doing="applying the retention policies",
        )
