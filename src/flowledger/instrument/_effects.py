"""Effects: idempotency keys and the opt-in local duplicate guard.

An effect node changes the world (sends a mail, charges a card). Every
attempt of one records an idempotency key: the sha256 of the canonical JSON
(sorted keys, no whitespace) of ``{"input", "node_id", "workflow_id"}``, so
duplicates can be found in the history. An item of a mapped node adds its
index, ``{"input", "item", "node_id", "workflow_id"}``: a map does each of
its items once, so two equal items of one run are two effects, not a
duplicate, while each item of a run again on the same input (a redelivery,
a re-run, a resume) has the key it had before. With the guard turned on
(``idempotency_guard=True``), an effect whose identical key already
succeeded on this machine is not run again: the attempt returns the output
recorded then and is recorded as a duplicate; a resumed run does the same
with the keys its earlier run recorded.

The key costs about what capturing the input does: an input whose canonical
JSON is over ``KEY_INPUT_LIMIT_BYTES`` gets no key, found out without
converting it whole. A key made from part of the input would make two
different effects look identical, and the guard or a resume would then skip
one of them; an attempt without a key is never skipped (it runs again). So
is one whose input could not be converted (a mapping whose ``items()``
raises, say): it is recorded, as an effect, without a key.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Final

import orjson

from flowledger.instrument.capture import RawJSON, to_jsonable
from flowledger.instrument.capture._bounded import oversized
from flowledger.instrument.capture._jsonable import Budget, convert
from flowledger.instrument.capture._plain_json import PLAIN_ONLY, NotPlainJSON, refuse

__all__ = ["KEY_INPUT_LIMIT_BYTES", "IdempotencyGuard", "idempotency_key"]

KEY_INPUT_LIMIT_BYTES: Final = 64 * 1024
"""The largest canonical JSON of an input that gets an idempotency key (bytes)."""
_canonical: Final = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=refuse
).encode


def idempotency_key(workflow_id: str, node_id: str, input_value: Any, *, item: int | None = None) -> str | None:
    """sha256 of the canonical JSON of ``{"input", "node_id", "workflow_id"}``, and ``"item"`` (the index of a
    mapped node's item) when given; None for an input over the limit.

    Keys of effects that are not mapped are what they always were for every
    input within the limit, so the keys of runs recorded before still match.
    Raises what converting the input raises (the caller records the attempt
    without a key).
    """
    text = _input_json(input_value)
    if text is None:
        return None
    # what json.dumps(body, sort_keys=True, ...) writes: "input" < "item" < "node_id" < "workflow_id"
    index = "" if item is None else f'"item":{int(item)},'
    body = f'{{"input":{text},{index}"node_id":{_canonical(node_id)},"workflow_id":{_canonical(workflow_id)}}}'
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _input_json(value: Any) -> str | None:
    """The canonical JSON of ``value`` as converted for capture, or None past ``KEY_INPUT_LIMIT_BYTES``.

    Bounded work: a value surely over the limit is recognised from its
    lengths; plain JSON is checked and encoded in C; anything else is
    converted with a budget that stops at the limit.
    """
    limit = KEY_INPUT_LIMIT_BYTES
    if oversized(value, limit, None):
        return None
    text: str | None = None
    try:  # orjson refuses what the conversion would change: other types, big integers, lone surrogates, odd keys
        plain = orjson.dumps(value, default=refuse, option=PLAIN_ONLY)
    except (NotPlainJSON, TypeError, RecursionError):
        plain = None
    if plain is not None:
        if len(plain) > 2 * limit:  # orjson writes a float at most a few characters longer than json does
            return None
        try:
            text = _canonical(value)
        except ValueError:  # NaN or an infinity (orjson wrote null): the conversion marks them
            text = None
    if text is None:
        budget = Budget(limit)
        converted = convert(value, None, 0, set(), budget)
        if budget.cut:  # what it counted is a lower bound of the JSON: over the limit
            return None
        text = json.dumps(converted, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    if len(text) > limit or len(text.encode("utf-8")) > limit:
        return None
    return text


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
