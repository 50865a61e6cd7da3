"""Writing many rows with few SQLite statements.

``executemany`` runs one ``sqlite3_step`` per row, and the ``sqlite3``
module releases the GIL around every step. On the receiver's writer
thread that hands the GIL back and forth with the event loop once per row:
while the event loop is busy (parsing the next request), each hand-back
waits for the interpreter's switch interval, and the writer crawls. A
multi-row ``INSERT ... VALUES (...), (...), ...`` binds a chunk of rows
under the GIL in one C loop, then inserts them all in one step with the
GIL released, so the two threads really run side by side. Measured with a
busy Python thread beside the writer: about ten times faster than
``executemany``; alone, a fifth faster.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from functools import cache
from itertools import chain
from typing import Any, Final

import aiosqlite

__all__ = ["insert_rows"]

_CHUNK_ROWS: Final = 256
"""Rows per statement at most: few statements per commit, and only a few distinct statement texts to cache."""


@cache
def _max_params() -> int:
    """Host parameters one statement may have in the SQLite library Python uses (999 before 3.32)."""
    conn = sqlite3.connect(":memory:")
    try:
        return int(conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    finally:
        conn.close()


@cache
def _statement(head: str, width: int, rows: int, tail: str) -> str:
    one = "(" + ", ".join("?" * width) + ")"
    return f"{head} VALUES {', '.join([one] * rows)}{tail}"


async def insert_rows(
    conn: aiosqlite.Connection, head: str, rows: Sequence[Sequence[Any]], *, width: int, tail: str = ""
) -> None:
    """Run ``{head} VALUES (row), (row), ...{tail}`` over ``rows`` in chunks.

    ``head`` is the statement up to ``VALUES`` (``INSERT INTO t (a, b)``),
    ``width`` the number of values in every row, ``tail`` what follows the
    rows (an ``ON CONFLICT`` clause).
    """
    per_statement = max(1, min(_CHUNK_ROWS, _max_params() // width))
    for start in range(0, len(rows), per_statement):
        part = rows[start : start + per_statement]
        await conn.execute(_statement(head, width, len(part), tail), list(chain.from_iterable(part)))
