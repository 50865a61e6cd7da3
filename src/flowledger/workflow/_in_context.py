"""Awaiting a coroutine in a context of its own without a task of its own.

The scheduler runs a chain's next node in the task of the node before it
(no wake-up of the event loop per node), yet each node must see only its
own context, as in a task of its own: :class:`InContext` gives it that.
"""

from __future__ import annotations

import contextvars
from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["InContext"]


class InContext:
    """Await a coroutine in the given context, in the task that awaits this (which keeps its own context).

    What a task of its own would do for the coroutine (each step run in ``context``), without the
    task: no wake-up of the event loop to start it. Whatever the coroutine waits on, and whatever is
    thrown into the awaiting task (a cancellation), passes through unchanged.
    """

    __slots__ = ("_context", "_coroutine")

    def __init__(self, coroutine: Coroutine[Any, Any, Any], context: contextvars.Context) -> None:
        self._coroutine = coroutine
        self._context = context

    def __await__(self) -> Generator[Any, Any, Any]:
        coroutine, run = self._coroutine, self._context.run
        try:
            waited = run(coroutine.send, None)
            while True:
                thrown: BaseException | None = None
                try:
                    sent = yield waited
                except GeneratorExit:
                    run(coroutine.close)
                    raise
                except BaseException as exc:
                    thrown = exc
                # Thrown in here, not in the except clause: the coroutine must not see it as the exception
                # being handled (its own later errors would carry it as their context), as a task's would not.
                waited = run(coroutine.send, sent) if thrown is None else run(coroutine.throw, thrown)
        except StopIteration as returned:
            return returned.value
