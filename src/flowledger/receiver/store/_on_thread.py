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

About two fifths of that thread's time is SQLite's own work, which runs
with the interpreter lock released; the rest is Python (folding, hashing,
building rows). Given a :class:`StatementThread`, a ``ThreadConnection``
overlaps the two: a write statement (``INSERT``, ``UPDATE``, ``DELETE``,
through ``execute`` or ``executemany``) is queued to that thread, which
runs the queue in order on the same connection, and the caller goes on
folding and hashing the next rows. Every other statement (a read, the
transaction's ``BEGIN``, ``COMMIT`` and ``ROLLBACK``, a pragma) first waits
for the queue to be empty, so the connection is used by one thread at a
time and every statement sees the ones before it. A queued statement that
fails skips the rest of the queue, and its own exception is raised at the
next wait (a read, ``COMMIT``), before the transaction could commit; should
the work's own code fail first, the work rolls back and the statement's
error, the earlier one, is what the caller gets (a full disk stays a full
disk). The store stops the thread from the connection's own thread, after
whatever work was handed there (:func:`stop_statements`). The
overlap needs the interpreter to hand the lock over often
(``sys.setswitchinterval``, which ``flowledger serve`` sets to 0.2 ms):
with the default 5 ms the statement thread waits that long for the lock
after each statement while the caller runs Python, so the store uses one
only at a switch interval of :data:`OVERLAP_MAX_SWITCH_INTERVAL_S` or less.

aiosqlite has no public call for "run this function on the connection's
thread"; its ``Connection._execute`` (queue a function for the thread) and
``_conn`` (the ``sqlite3`` connection) are used, and the dependency is
bounded to the versions where they are the same (0.20 to 0.22).
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

if TYPE_CHECKING:
    import aiosqlite

__all__ = [
    "OVERLAP_MAX_SWITCH_INTERVAL_S",
    "StatementThread",
    "ThreadConnection",
    "WriteConnection",
    "run_on_thread",
    "stop_statements",
]

_T = TypeVar("_T")
OVERLAP_MAX_SWITCH_INTERVAL_S: Final = 0.001
"""The longest thread switch interval at which the SQLite store hands its statements to a
:class:`StatementThread`. With a longer one (Python's default is 5 ms) the statement thread waits that long
for the lock after each statement, and costs more than it overlaps: measured over HTTP on two cores, 24,964
events/s at 5 ms against 26,756 for the writer running its statements itself (and 28,569 at 0.2 ms)."""
_QUEUED: Final = ("INSERT", "UPDATE", "DELETE", "REPLACE")
"""The statements a :class:`StatementThread` takes (but not one ``RETURNING`` rows): writes whose cursor nobody
reads. Every other statement (``BEGIN``, ``COMMIT``, ``ROLLBACK``, a read, a pragma) runs at once, after the
queue."""


class WriteConnection(Protocol):
    """What the store's write code awaits of a connection: an ``aiosqlite.Connection``, or a
    :class:`ThreadConnection` on that connection's thread."""

    def execute(self, sql: str, parameters: Iterable[Any] | None = None, /) -> Awaitable[Any]:
        """Run one statement."""

    def executemany(self, sql: str, parameters: Iterable[Iterable[Any]], /) -> Awaitable[Any]:
        """Run one statement for each parameter row."""

    def execute_fetchall(self, sql: str, parameters: Iterable[Any] | None = None, /) -> Awaitable[Iterable[Any]]:
        """Run one statement and return all its rows."""


class StatementThread:
    """A thread that runs queued write statements in order on one ``sqlite3`` connection (see the module)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn: sqlite3.Connection = conn._conn
        self._queue: queue.SimpleQueue[tuple[str, Any, bool] | None] = queue.SimpleQueue()
        self._done = threading.Condition()
        self._queued = 0
        self._error: BaseException | None = None
        self._dropped: BaseException | None = None
        self.ran = 0
        """Statements run so far (not those skipped after a failure)."""
        self._thread = threading.Thread(target=self._run, name="flowledger-sqlite-statements", daemon=True)
        self._thread.start()

    def put(self, sql: str, parameters: Any, *, many: bool) -> None:
        """Queue one statement (``many``: ``parameters`` is a list of rows)."""
        with self._done:
            self._queued += 1
        self._queue.put((sql, parameters, many))

    def wait(self) -> None:
        """Return once every queued statement has run; raise the first one's error, if one failed."""
        with self._done:
            while self._queued:
                self._done.wait()
            error, self._error = self._error, None
        if error is not None:
            raise error

    def discard(self) -> None:
        """Return once the queue is empty, setting a failed statement's error aside (the transaction rolls back);
        :meth:`dropped` gives it."""
        with self._done:
            while self._queued:
                self._done.wait()
            if self._error is not None:
                self._dropped, self._error = self._error, None

    def dropped(self) -> BaseException | None:
        """The error :meth:`discard` set aside since the last call, if any."""
        error, self._dropped = self._dropped, None
        return error

    def close(self) -> None:
        """Stop the thread once the queue is done (on the connection's own thread: :func:`stop_statements`)."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        conn, take = self._conn, self._queue.get
        while (item := take()) is not None:
            sql, parameters, many = item
            if self._error is None:  # after a failure, the rest of the transaction is not run
                self.ran += 1
                try:
                    if many:
                        conn.executemany(sql, parameters)
                    else:
                        conn.execute(sql, parameters)
                except BaseException as exc:  # raised to the writer at its next wait
                    self._error = exc
            with self._done:
                self._queued -= 1
                if not self._queued:
                    self._done.notify_all()


class ThreadConnection:
    """A ``sqlite3`` connection behind the async methods of :class:`WriteConnection`, for its own thread.

    Each method runs its statement when called (or queues it to ``statements``) and returns a coroutine
    that is done at once: awaiting it never suspends. A queued statement returns no cursor.
    """

    def __init__(self, conn: sqlite3.Connection, statements: StatementThread | None = None) -> None:
        self._conn = conn
        self._statements = statements

    async def execute(self, sql: str, parameters: Any = None, /) -> sqlite3.Cursor | None:
        statements = self._statements
        if statements is None:
            return self._conn.execute(sql, () if parameters is None else parameters)
        if _queued(sql):
            statements.put(sql, () if parameters is None else parameters, many=False)
            return None
        if sql.lstrip()[:8].upper().startswith("ROLLBACK"):
            statements.discard()
        else:
            statements.wait()
        return self._conn.execute(sql, () if parameters is None else parameters)

    async def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor | None:
        statements = self._statements
        if statements is None:
            return self._conn.executemany(sql, parameters)
        if _queued(sql):
            statements.put(sql, list(parameters), many=True)  # a generator would be read on the other thread
            return None
        statements.wait()
        return self._conn.executemany(sql, parameters)

    async def execute_fetchall(self, sql: str, parameters: Any = None, /) -> list[Any]:
        if self._statements is not None:
            self._statements.wait()
        return self._conn.execute(sql, () if parameters is None else parameters).fetchall()


def _queued(sql: str) -> bool:
    """Whether ``sql`` goes to the statement thread (see :data:`_QUEUED`)."""
    head = sql.lstrip()[:7].upper()
    return head.startswith(_QUEUED) and "RETURNING" not in sql.upper()


def _to_end(
    work: Callable[[ThreadConnection], Coroutine[Any, Any, _T]],
    conn: sqlite3.Connection,
    statements: StatementThread | None,
) -> _T:
    """Run ``work`` over ``conn`` to its end in this call (on the connection's thread), its queue done too."""
    coroutine = work(ThreadConnection(conn, statements))
    try:
        coroutine.send(None)
    except StopIteration as done:
        if statements is not None:
            statements.wait()  # a statement queued after the work's last wait still fails the work
        return done.value  # type: ignore[no-any-return]
    except BaseException:
        if statements is not None:
            statements.discard()
            first = statements.dropped()
            if first is not None:  # a statement failed before the work's own error: that failure is the cause
                raise first  # noqa: B904 - the work's error stays attached as its context
        raise
    coroutine.close()
    if statements is not None:
        statements.discard()
    raise RuntimeError("work run on the connection's thread awaited something other than its statements")


async def run_on_thread(
    conn: aiosqlite.Connection,
    work: Callable[[ThreadConnection], Coroutine[Any, Any, _T]],
    *,
    statements: StatementThread | None = None,
) -> _T:
    """Run ``work`` on ``conn``'s own thread, in one hand-off, and return its result (or raise its error).

    ``work`` may await only its connection's methods. Nothing else may use
    ``conn`` meanwhile; the store's single writer sees to that. With
    ``statements`` (a :class:`StatementThread` on ``conn``), its write
    statements run there, overlapping its Python; the queue is empty again
    when this returns or raises.
    """
    result: _T = await conn._execute(_to_end, work, conn._conn, statements)  # type: ignore[no-untyped-call]
    return result


async def stop_statements(conn: aiosqlite.Connection, statements: StatementThread) -> None:
    """Stop ``statements`` from ``conn``'s own thread: after any work already handed to it (an append whose
    caller was cancelled still runs there, and may queue statements until it ends)."""
    await conn._execute(statements.close)  # type: ignore[no-untyped-call]
