"""A background task of the receiver that does one piece of work every so often (the sweeper, retention).

Each pass is awaited to its end before the next interval starts; a pass that
fails is logged and tried again at the next interval, so one bad pass never
stops the task. ``stop()`` cancels it and is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from flowledger._exceptions import StoreUnavailable

__all__ = ["Periodic"]

_log = logging.getLogger("flowledger.receiver")


class Periodic:
    """Await ``work()`` every ``interval_s`` seconds from ``start()`` until ``stop()`` (never when it is 0)."""

    def __init__(self, name: str, interval_s: float, work: Callable[[], Awaitable[Any]], *, doing: str) -> None:
        """``doing`` says what a pass does, for the log line of a failed one (``"sweeping for stuck runs"``)."""
        self._name = name
        self._interval_s = interval_s
        self._work = work
        self._doing = doing
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the task (no-op when the interval is 0 or it runs already)."""
        if self._interval_s > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        """Stop the task; idempotent."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self._work()
            except StoreUnavailable as exc:  # the database locked, down or full: one line, the next pass tries again
                _log.warning("%s failed: %s; trying again in %g s", self._doing, exc, self._interval_s)
            except Exception:  # a failed pass is logged and tried again next interval
                _log.exception("%s failed", self._doing)
