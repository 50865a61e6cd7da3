"""A Ctrl-C that arrives while the receiver starts is never lost.

Until uvicorn takes SIGINT over (when it starts serving), Python's own
handler raises KeyboardInterrupt wherever the main thread happens to be.
Where that is a weakref callback or a ``__del__`` (garbage collected during
the imports and the database's migrations), Python prints "Exception
ignored" and carries on, and the receiver went on to serve as if nothing
had been asked of it. :class:`StartInterrupt` raises the same
KeyboardInterrupt but also remembers the signal, and :meth:`~StartInterrupt.check`
raises it again at the points where starting could go on without it: the
stop then happens there, however the first one was swallowed (and quietly:
the "Exception ignored" report of a swallowed one is not printed). Just
before uvicorn runs, :meth:`~StartInterrupt.hand_over` gives SIGINT to
uvicorn's own handler, so one that comes while the event loop is made asks
the server to stop as soon as it has started, rather than breaking into the
loop's set-up.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["StartInterrupt"]


class StartInterrupt:
    """Remembers a SIGINT from :meth:`install` on; :meth:`check` raises KeyboardInterrupt once one came.

    As a context manager it installs on entry and restores on exit.
    """

    def __init__(self) -> None:
        self.seen = False
        self._before: Any = None
        self._hook_before: Callable[[Any], Any] | None = None
        self._installed = False

    def install(self) -> StartInterrupt:
        """Take SIGINT over (main thread only: elsewhere signals cannot be handled, and nothing is done)."""
        if threading.current_thread() is threading.main_thread():
            self._before = signal.signal(signal.SIGINT, self._handle)
            self._hook_before, sys.unraisablehook = sys.unraisablehook, self._unraisable
            self._installed = True
        return self

    def __enter__(self) -> StartInterrupt:
        return self.install()

    def __exit__(self, *_exc: object) -> None:
        self.restore()

    def _unraisable(self, unraisable: Any) -> None:
        """Python's report of an exception it had to swallow: silent for our KeyboardInterrupt, remembered."""
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and self.seen:
            return
        assert self._hook_before is not None  # set with this hook
        self._hook_before(unraisable)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.seen = True
        raise KeyboardInterrupt

    def check(self) -> None:
        """Raise KeyboardInterrupt when a SIGINT came since :meth:`install` (it may have been swallowed)."""
        if self.seen:
            raise KeyboardInterrupt

    def hand_over(self, handler: Callable[[int, FrameType | None], Any]) -> None:
        """From now on SIGINT calls ``handler`` (a server's own, which asks it to stop) instead of raising."""
        if self._installed:
            signal.signal(signal.SIGINT, handler)

    def restore(self) -> None:
        """Give SIGINT, and the report of swallowed exceptions, back to what they were before :meth:`install`."""
        if self._installed:
            if self._before is not None:  # None: a handler not set from Python, which Python cannot set back
                signal.signal(signal.SIGINT, self._before)
            if sys.unraisablehook == self._unraisable:
                sys.unraisablehook = self._hook_before  # type: ignore[assignment]
            self._installed = False
