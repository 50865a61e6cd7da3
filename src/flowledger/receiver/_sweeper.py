"""The sweeper: marks runs ``stuck`` when they stop showing signs of life.

Every ``sweep_interval_s`` it asks the writer to run
:meth:`~flowledger.receiver.store._protocol.Store.sweep`, an indexed query over
running runs whose last event is older than ``stuck_after_s`` (or than
``DEFAULT_STUCK_HEARTBEATS`` of the run's own heartbeat interval, whichever
is longer). The reason is recorded on the run; a later event moves it on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from flowledger._wire import now_ts
from flowledger.receiver._config import DEFAULT_STUCK_HEARTBEATS, ReceiverConfig
from flowledger.receiver._metrics import Metrics
from flowledger.receiver._writer import Writer
from flowledger.receiver.store._protocol import Store

__all__ = ["Sweeper", "sweep_once"]

_log = logging.getLogger("flowledger.receiver")


async def sweep_once(store: Store, writer: Writer, config: ReceiverConfig, metrics: Metrics) -> list[str]:
    """Run one sweep on the writer; return the ids of the runs marked stuck."""
    now = now_ts()

    async def work() -> list[str]:
        return await store.sweep(now=now, stuck_after_s=config.stuck_after_s, heartbeats=DEFAULT_STUCK_HEARTBEATS)

    marked = await writer.call(work)
    metrics.runs_stuck_marked += len(marked)
    if marked:
        _log.info("marked %d run(s) stuck", len(marked))
    return marked


class Sweeper:
    """Background task calling :func:`sweep_once` periodically."""

    def __init__(self, store: Store, writer: Writer, config: ReceiverConfig, metrics: Metrics) -> None:
        self._args = (store, writer, config, metrics)
        self._interval_s = config.sweep_interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sweeping (no-op when the interval is 0)."""
        if self._interval_s > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="flowledger-sweeper")

    async def stop(self) -> None:
        """Stop sweeping; idempotent."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await sweep_once(*self._args)
            except Exception:  # a failed sweep is logged and retried next interval
                _log.exception("sweeping for stuck runs failed")
