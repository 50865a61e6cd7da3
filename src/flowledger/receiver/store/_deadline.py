"""A time limit for one read: a query that runs past it is stopped, and the client told so.

The receiver gives each query of the query API, the viewer and the analytics
routes ``read_timeout_s`` (30 s by default): a pathological one (a search that
matches everything, a range of years grouped by hour) must not hold a reader,
and with it every other client, for as long as it would take. SQLite checks
a :class:`Deadline` through its progress handler every
:data:`PROGRESS_STEPS` virtual-machine steps and stops the statement with
``SQLITE_INTERRUPT`` once it has passed; PostgreSQL's engine sets
``statement_timeout`` on the connection instead. Either way the store raises
:class:`~flowledger._exceptions.QueryTimeout`, which the receiver answers 503.

Reads whose length is the ledger's own size, not the question's (exports,
``verify``, coverage, reconciliation, proofs, resume evidence), have no limit.
"""

from __future__ import annotations

import math
import sqlite3
import time
from typing import Final

from flowledger._exceptions import QueryTimeout

__all__ = ["PROGRESS_STEPS", "Deadline", "interrupted", "query_timeout"]

PROGRESS_STEPS: Final = 10_000
"""SQLite virtual-machine steps between two looks at the deadline (well under a millisecond of work)."""


class Deadline:
    """SQLite's progress handler for one connection: stops the running statement once :attr:`at` has passed."""

    __slots__ = ("at",)

    def __init__(self) -> None:
        self.at = math.inf
        """The ``time.monotonic()`` past which the statement stops (infinity: none running under a limit)."""

    def __call__(self) -> bool:
        return time.monotonic() > self.at

    def start(self, seconds: float) -> None:
        """Limit the statements from now on to ``seconds`` from now."""
        self.at = time.monotonic() + seconds

    def clear(self) -> None:
        """No limit until the next :meth:`start`."""
        self.at = math.inf


def interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite stopping a statement at a progress handler's word (``SQLITE_INTERRUPT``)."""
    return (
        isinstance(exc, sqlite3.OperationalError)
        and getattr(exc, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_INTERRUPT
    )


def query_timeout(seconds: float) -> QueryTimeout:
    """The error for a read stopped at its limit of ``seconds``."""
    return QueryTimeout(
        f"the query ran past the limit of {seconds:g} s for one read and was stopped; "
        "narrow it (a shorter since/until range, fewer filters) and ask again"
    )
