"""A Ctrl-C while the receiver starts is remembered, even when Python swallows the KeyboardInterrupt it raised."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from flowledger.receiver._interrupt import StartInterrupt


@pytest.fixture
def interrupt() -> Iterator[StartInterrupt]:
    with StartInterrupt() as guard:
        yield guard


class _SignalledWhileCollected:
    """Sends SIGINT from its ``__del__`` and runs on until Python's handler has run inside it: a
    KeyboardInterrupt raised there is reported as unraisable and swallowed, as in a weakref callback."""

    def __del__(self) -> None:
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(100_000):  # the handler runs between bytecodes, here
            pass


def test_a_swallowed_ctrl_c_is_raised_again_by_check(interrupt: StartInterrupt) -> None:
    """The KeyboardInterrupt lost in a ``__del__`` comes back from check(), and its report stays quiet."""
    reports: list[Any] = []
    previous, sys.unraisablehook = sys.unraisablehook, reports.append
    interrupt.restore()
    interrupt.install()  # the guard wraps the hook now in place
    try:
        interrupt.check()  # nothing yet
        obj = _SignalledWhileCollected()
        del obj  # the KeyboardInterrupt is raised and swallowed inside __del__
        assert interrupt.seen
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
        assert reports == []  # not printed as "Exception ignored"
    finally:
        interrupt.restore()
        sys.unraisablehook = previous


def test_other_swallowed_errors_are_still_reported(interrupt: StartInterrupt) -> None:
    """Only the guard's own KeyboardInterrupt is kept quiet: any other unraisable error reaches the hook before."""
    reports: list[Any] = []
    previous, sys.unraisablehook = sys.unraisablehook, reports.append
    interrupt.restore()
    interrupt.install()
    try:

        class Failing:
            def __del__(self) -> None:
                raise ValueError("from __del__")

        obj = Failing()
        del obj
        assert [type(r.exc_value) for r in reports] == [ValueError]
        assert not interrupt.seen
    finally:
        interrupt.restore()
        sys.unraisablehook = previous


def test_a_ctrl_c_raises_as_python_does_and_restore_gives_sigint_back(interrupt: StartInterrupt) -> None:
    """Outside a ``__del__`` the KeyboardInterrupt propagates as usual; restore() puts back the handler before."""
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGINT)
    assert interrupt.seen
    interrupt.restore()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_after_hand_over_sigint_goes_to_the_servers_handler(interrupt: StartInterrupt) -> None:
    """hand_over(): a SIGINT calls the given handler (uvicorn's, which asks the server to stop), raising nothing."""
    got: list[int] = []
    interrupt.hand_over(lambda signum, _frame: got.append(signum))
    signal.raise_signal(signal.SIGINT)
    assert got == [signal.SIGINT]
    interrupt.restore()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
