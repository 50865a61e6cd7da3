"""The sweeper: marks runs ``stuck`` when they stop showing signs of life.

Every ``sweep_interval_s`` it asks the writer to run
:meth:`~flowledger.receiver.store._protocol.Store.sweep`, an indexed query over
running runs whose last event is older than ``stuck_after_s`` (or than
``DEFAULT_STUCK_HEARTBEATS`` of the run's own heartbeat interval, whichever
is longer). The reason is recorded on the run; a later event moves it on.
"""

from __future__ import annotations

import functools
import logging

from flowledger._wire import now_ts
from flowledger.receiver._config import DEFAULT_STUCK_HEARTBEATS, ReceiverConfig
from flowledger.receiver._metrics import Metrics
from flowledger.receiver._periodic import Periodic
from flowledger.receiver._writer import Writer
from flowledger.receiver.store._protocol import Store

__all__ = ["Sweeper", "sweep_once"]

_log = logging.getLogger("flowledger.receiver")


async def sweep_once(
    store: Store, writer: Writer, config: ReceiverConfig, metrics: Metrics, *, now: str | None = None
) -> list[str]:
    """Run one sweep on the writer; return the ids of the runs marked stuck.

    ``now`` is the sweep's time, the receiver's clock by default (a test may sweep as if later).
    """
    now = now or now_ts()

    async def work() -> list[str]:
        return await store.sweep(now=now, stuck_after_s=config.stuck_after_s, heartbeats=DEFAULT_STUCK_HEARTBEATS)

    marked = await writer.call(work)
    metrics.runs_stuck_marked += len(marked)
    if marked:
        _log.info("marked %d run(s) stuck", len(marked))
    return marked


class Sweeper(Periodic):
    """Background task calling :func:`sweep_once` every ``sweep_interval_s`` (never when it is 0)."""

    def __init__(self, store: Store, writer: Writer, config: ReceiverConfig, metrics: Metrics) -> None:
        super().__init__(
            "flowledger-sweeper",
            config.sweep_interval_s,
            functools.partial(sweep_once, store, writer, config, metrics),
            doing="sweeping for stuck runs",
        )
