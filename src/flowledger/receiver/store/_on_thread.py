"""A whole write transaction run on the SQLite connection's own thread, in one hand-off.

aiosqlite runs each statement on the connection's thread and hands every
result back to the event loop. A commit group of ingest was about 32 such
round trips (what is stored already, the runs to fold into, the head, then
one statement per table and chunk, the commit), and each waited for the
event loop to come back to the writer, which was often busy decoding the
next request. The store's write code stays one async function, written
against :class:`WriteConnection` (what it awaits of a connection); here it
runs on the connection's thread over :class:`ThreadConnection`, whose
methods run their statement at once and never suspend, so the coroutine
runs to its end in one call (:func:`run_on_thread`): one hand-off per
commit group, and the event loop free for other requests meanwhile.

aiosqlite has no public call for "run this function on the connection's
thread"; its ``Connection._execute`` (queue a function for the thread) and
``_conn`` (the ``sqlite3`` connection) are used, and the dependency is
bounded to the versions where they are the same (0.20 to 0.22).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import aiosqlite

__all__ = ["ThreadConnection", "WriteConnection", "run_on_thread"]

_T = TypeVar("_T")


class WriteConnection(Protocol):
    """What the store's write code awaits of a connection: an ``aiosqlite.Connection``, or a
    :class:`ThreadConnection` on that connection's thread."""

    def execute(self, sql: str, parameters: Iterable[Any] | None = None, /) -> Awaitable[Any]:
        """Run one statement."""

    def executemany(self, sql: str, parameters: Iterable[Iterable[Any]], /) -> Awaitable[Any]:
        """Run one statement for each parameter row."""

    def execute_fetchall(self, sql: str, parameters: Iterable[Any] | None = None, /) -> Awaitable[Iterable[Any]]:
        """Run one statement and return all its rows."""


class ThreadConnection:
    """A ``sqlite3`` connection behind the async methods of :class:`WriteConnection`, for its own thread.

    Each method runs its statement when called and returns a coroutine that
    is done at once: awaiting it never suspends.
    """

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, parameters: Any = None, /) -> sqlite3.Cursor:
        return self._conn.execute(sql, () if parameters is None else parameters)

    async def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        return self._conn.executemany(sql, parameters)

    async def execute_fetchall(self, sql: str, parameters: Any = None, /) -> list[Any]:
        return self._conn.execute(sql, () if parameters is None else parameters).fetchall()


def _to_end(work: Callable[[ThreadConnection], Coroutine[Any, Any, _T]], conn: sqlite3.Connection) -> _T:
    """Run ``work`` over ``conn`` to its end in this call (on the connection's thread)."""
    coroutine = work(ThreadConnection(conn))
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("work run on the connection's thread awaited something other than its statements")


async def run_on_thread(conn: aiosqlite.Connection, work: Callable[[ThreadConnection], Coroutine[Any, Any, _T]]) -> _T:
    """Run ``work`` on ``conn``'s own thread, in one hand-off, and return its result (or raise its error).

    ``work`` may await only its connection's methods. Nothing else may use
    ``conn`` meanwhile; the store's single writer sees to that.
    """
    result: _T = await conn._execute(_to_end, work, conn._conn)  # type: ignore[no-untyped-call]
    return result
