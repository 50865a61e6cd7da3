"""Effects: idempotency keys and the opt-in local duplicate guard.

An effect node changes the world (sends a mail, charges a card). Every
attempt of one records an idempotency key, by default the sha256 of the
canonical JSON (sorted keys, no whitespace) of the workflow id, node id and
input, so duplicates can be found in the history. With the guard turned on
(``idempotency_guard=True``), an effect whose identical key already
succeeded on this machine is not run again: the attempt returns the output
recorded then and is recorded as a duplicate.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from flowledger.instrument._capture import RawJSON, to_jsonable

__all__ = ["IdempotencyGuard", "idempotency_key"]


def idempotency_key(workflow_id: str, node_id: str, input_value: Any) -> str:
    """sha256 of canonical JSON of ``{"input", "node_id", "workflow_id"}``."""
    body = {"workflow_id": workflow_id, "node_id": node_id, "input": to_jsonable(input_value)}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class IdempotencyGuard:
    """Remembers the output of each effect key that succeeded, in a local SQLite file."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "idempotency.sqlite3"
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS effects (key TEXT PRIMARY KEY, output TEXT NOT NULL, succeeded_at REAL)"
            )
            self._conn = conn
        return self._conn

    def lookup(self, key: str) -> tuple[bool, Any]:
        """``(True, output)`` when ``key`` already succeeded, else ``(False, None)``."""
        with self._lock:
            row = self._connection().execute("SELECT output FROM effects WHERE key = ?", (key,)).fetchone()
        if row is None:
            return False, None
        return True, json.loads(row[0])

    def remember(self, key: str, output: Any) -> None:
        text = output.json() if isinstance(output, RawJSON) else json.dumps(to_jsonable(output), ensure_ascii=False)
        with self._lock:
            self._connection().execute(
                "INSERT OR IGNORE INTO effects (key, output, succeeded_at) VALUES (?, ?, ?)", (key, text, time.time())
            )
