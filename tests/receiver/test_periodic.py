"""The receiver's periodic background task: a pass each interval, a failed pass logged and retried."""

from __future__ import annotations

import asyncio
import logging

import pytest

from flowledger._exceptions import StoreUnavailable
from flowledger.receiver._periodic import Periodic


def test_a_failed_pass_is_logged_and_the_next_one_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    """The first pass raises; it is logged with what the task does, and later passes run."""
    passes: list[int] = []

    async def work() -> None:
        passes.append(len(passes))
        if len(passes) == 1:
            raise RuntimeError("disk on fire")

    async def main() -> None:
        task = Periodic("test-periodic", 0.001, work, doing="testing the task")
        task.start()
        task.start()  # a second start does not start a second task
        while len(passes) < 3:
            await asyncio.sleep(0.001)
        await task.stop()
        await task.stop()
        count = len(passes)
        await asyncio.sleep(0.01)
        assert len(passes) == count, "a stopped task ran again"

    with caplog.at_level(logging.ERROR, logger="flowledger.receiver"):
        asyncio.run(main())
    assert [r.getMessage() for r in caplog.records] == ["testing the task failed"]


def test_an_interval_of_zero_never_starts() -> None:
    """With interval 0 the work never runs."""
    ran: list[bool] = []

    async def work() -> None:
        ran.append(True)

    async def main() -> None:
        task = Periodic("test-periodic", 0, work, doing="nothing")
        task.start()
        await asyncio.sleep(0.01)
        await task.stop()

    asyncio.run(main())
    assert ran == []


def test_a_pass_the_database_cannot_take_now_is_one_line_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """A store locked, down or full (StoreUnavailable) fails the pass with one warning naming it, not a traceback;
    the next pass runs."""
    passes: list[int] = []

    async def work() -> None:
        passes.append(len(passes))
        if len(passes) == 1:
            raise StoreUnavailable("purging runs failed: database is locked")

    async def main() -> None:
        task = Periodic("test-periodic", 0.001, work, doing="applying the retention policies")
        task.start()
        while len(passes) < 2:
            await asyncio.sleep(0.001)
        await task.stop()

    with caplog.at_level(logging.WARNING, logger="flowledger.receiver"):
        asyncio.run(main())
    assert [(r.levelno, r.exc_info) for r in caplog.records] == [(logging.WARNING, None)]
    assert (
        caplog.records[0]
        .getMessage()
        .startswith("applying the retention policies failed: purging runs failed: database is locked; trying again in")
    )
