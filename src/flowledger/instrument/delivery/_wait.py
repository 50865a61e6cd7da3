"""How long ``flush`` and ``shutdown`` may wait: the timeout a caller gives, made safe to wait on.

A caller may pass a number of seconds, or ``None`` or ``float("inf")`` for
"until done". The thread primitives refuse a wait past
``threading.TIMEOUT_MAX`` (an OverflowError: about 292 years on Linux, 49
days on Windows), so "until done" is :data:`UNTIL_DONE_S`, a wait no
delivery outlasts. A negative number or NaN waits not at all. Anything else
(a string, say) is a mistake of the caller's: :class:`UsageError`.
"""

from __future__ import annotations

import math
import threading
from typing import Final

from flowledger._exceptions import UsageError

__all__ = ["UNTIL_DONE_S", "ReentrantEvent", "wait_s"]

UNTIL_DONE_S: Final = min(7 * 86_400.0, threading.TIMEOUT_MAX / 2)
"""What "until done" waits at most: a week, far within every platform's longest thread wait."""


def wait_s(timeout_s: object) -> float:
    """Seconds to wait for ``timeout_s``: from 0 to :data:`UNTIL_DONE_S`; None and infinity wait until done.

    Raises UsageError when ``timeout_s`` is neither a number nor None.
    """
    if timeout_s is None:
        return UNTIL_DONE_S
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
        raise UsageError(
            f"a flush or shutdown timeout must be a number of seconds, or None to wait until done; "
            f"not {type(timeout_s).__name__}."
        )
    if timeout_s >= UNTIL_DONE_S:  # before any float(): an int past a float's range is "until done" too
        return UNTIL_DONE_S
    if math.isnan(timeout_s) or timeout_s <= 0:
        return 0.0
    return float(timeout_s)


class ReentrantEvent(threading.Event):
    """A ``threading.Event`` that a signal handler may set while the thread it interrupted is inside ``set()``.

    The stock event guards its flag with a plain lock: a handler that records
    (and so wakes the sender or the timer) would wait for ever on the lock its
    own thread holds. This one's lock is re-entrant; nothing else changes.
    """

    def __init__(self) -> None:
        super().__init__()
        self._cond = threading.Condition(threading.RLock())
