"""The store's SQLite adapters bind every value as the sqlite3 module would without them."""

from __future__ import annotations

import sqlite3
from typing import Any

from flowledger._wire import EventKind, NodeStatus, RunStatus
from flowledger.receiver.store._binding import register_adapters

VALUES: list[Any] = [None, True, False, b"\x00\xff", EventKind.NODE_FINISHED, NodeStatus.SKIPPED, RunStatus.STUCK]
EXPECTED = [
    ("null", None),
    ("integer", 1),
    ("integer", 0),
    ("blob", b"\x00\xff"),
    ("text", "node_finished"),
    ("text", "skipped"),
    ("text", "stuck"),
]


def _stored(values: list[Any]) -> list[tuple[str, Any]]:
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("CREATE TABLE t (v)")
        conn.executemany("INSERT INTO t VALUES (?)", [(v,) for v in values])
        return [(str(kind), value) for kind, value in conn.execute("SELECT typeof(v), v FROM t ORDER BY rowid")]
    finally:
        conn.close()


def test_adapters_store_the_same_values_and_types() -> None:
    """None stays NULL, bools their integers, bytes a blob, enum members their text; registering twice is harmless."""
    register_adapters()
    register_adapters()
    assert _stored(VALUES) == EXPECTED
    assert _stored([7, 2.5, "text", bytearray(b"ab")]) == [
        ("integer", 7),
        ("real", 2.5),
        ("text", "text"),
        ("blob", b"ab"),
    ]
