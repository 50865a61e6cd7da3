"""Carrying the caller's context (its run, node attempt and OTel span) into threads.

The current run (``_run.current_run``) and node attempt
(``_node.current_node``) live in context variables, so asyncio tasks inherit
them when they are created and ``asyncio.to_thread`` carries them into its
thread. Plain threads and thread pools do not copy context on their own:
wrap the callable with :func:`in_context` (or use
:class:`ContextThreadPoolExecutor`).
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

__all__ = ["ContextThreadPoolExecutor", "in_context"]

P = ParamSpec("P")
R = TypeVar("R")


def in_context(fn: Callable[P, R]) -> Callable[P, R]:
    """Bind ``fn`` to the caller's context: its run, node and OTel span.

    Use it to hand work to a thread: ``threading.Thread(target=in_context(work))``.
    """
    ctx = contextvars.copy_context()

    @functools.wraps(fn)
    def bound(*args: P.args, **kwargs: P.kwargs) -> R:
        return ctx.copy().run(fn, *args, **kwargs)

    return bound


class ContextThreadPoolExecutor(ThreadPoolExecutor):
    """A ThreadPoolExecutor whose tasks run in the submitter's context."""

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        ctx = contextvars.copy_context()
        return super().submit(ctx.run, fn, *args, **kwargs)
