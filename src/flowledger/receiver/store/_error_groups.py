"""Error groups: failures that are the same error, folded into one row.

Two failures are the same error when their error type, their *normalised*
message, their node and their workflow are equal. Normalising replaces what
changes from one occurrence to the next by a placeholder, so a flood of one
error stays one group:

================================  ==========  ==========================================
what                              becomes     example
================================  ==========  ==========================================
a UUID                            ``<uuid>``  ``run 0190a3f2-...-7c1e`` -> ``run <uuid>``
a quoted value ('' or "")         ``<str>``   ``KeyError: 'user_42'`` -> ``'<str>'``
a URL                             ``<url>``   ``https://api.example.com/v1/o/7`` -> ``<url>``
a file path                       ``<path>``  ``/srv/app/x.py`` -> ``<path>``
a hex number or a long token      ``<hex>``   ``0x7f3a9c``, ``req_8f3a9c2b1d7e`` -> ``<hex>``
any other number                  ``<n>``     ``timed out after 30.5s`` -> ``after <n>s``
================================  ==========  ==========================================

An HTTP status code (a three-digit number after ``HTTP``, ``status``,
``code`` or ``error``, or opening a quoted ``'503 Service Unavailable'``) is
kept: a 503 and a 404 are different errors. A Python traceback in a message
is reduced to its last line (the exception itself); whitespace runs become
one space and the result is cut to :data:`MESSAGE_MAX_CHARS`.
The fingerprint is the first 16 hex digits of the SHA-256 of the type, the
normalised message, the node id and the workflow id.

What counts: every failed node attempt, and every failed or aborted run whose
error names no node (a run that failed at a node is counted through that
node's attempts, and its error's fingerprint leads to their group). Groups are
kept per project and UTC hour of the failure, so a time range answers exact
counts at the resolution of an hour; the query adds the hours up. A range
whose ``until`` is not after its ``since`` is empty (:func:`empty_range`), as
the statistics' is, whatever hours the two fall in.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Final

import aiosqlite

from flowledger._wire import NodeStatus, RunStatus
from flowledger.receiver.store._bulk import insert_rows
from flowledger.receiver.store._on_thread import WriteConnection
from flowledger.receiver.store._time import hour_of

__all__ = [
    "ERROR_GROUPS_SCHEMA",
    "ERROR_GROUP_SAMPLES",
    "MESSAGE_MAX_CHARS",
    "SAMPLES_BY_PROJECT_SQL",
    "ErrorGroupQuery",
    "Failure",
    "empty_range",
    "error_fingerprint",
    "error_groups",
    "error_groups_where",
    "failure_deltas",
    "forget_purged_samples",
    "group_json",
    "group_writes",
    "normalize_message",
    "record_failures",
    "record_failures_sync",
    "with_fingerprints",
]

ERROR_GROUP_SAMPLES: Final = 5
"""Run ids a group keeps as samples: the most recent ones."""
SAMPLES_BY_PROJECT_SQL: Final = "json_array(project, json(samples))"
"""A group row's samples with the project they are of (a row is one project's), as :func:`group_json` reads them."""
MESSAGE_MAX_CHARS: Final = 500
"""A normalised message is cut to this many characters."""
FINGERPRINT_HEX: Final = 16

ERROR_GROUPS_SCHEMA: Final = """
-- Failures grouped by fingerprint (error type, normalised message, node, workflow), per project and UTC hour.
CREATE TABLE error_groups (
    project TEXT NOT NULL, fingerprint TEXT NOT NULL, hour TEXT NOT NULL,
    type TEXT NOT NULL, message TEXT NOT NULL, node_id TEXT, workflow_id TEXT,
    count INTEGER NOT NULL, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL,
    samples TEXT NOT NULL,                 -- JSON [[at, run_id], ...], the newest ERROR_GROUP_SAMPLES
    PRIMARY KEY (project, fingerprint, hour)
) WITHOUT ROWID;
CREATE INDEX error_groups_by_hour ON error_groups (hour);
"""

_STATUS_QUOTED: Final = re.compile(r"'[1-5]\d\d [A-Z][\w -]*'")


def _quoted(match: re.Match[str]) -> str:
    """A quoted value becomes ``'<str>'``, unless it is an HTTP status line (``'503 Service Unavailable'``)."""
    return match.group(0) if _STATUS_QUOTED.fullmatch(match.group(0)) else "'<str>'"


_RULES: Final[tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...]] = (
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"]+"), "<url>"),
    (re.compile(r"'[^'\n]*'"), _quoted),
    (re.compile(r'"[^"\n]*"'), "'<str>'"),
    (re.compile(r"(?<![\w<])(?:[A-Za-z]:\\|~?/)[^\s'\",:;()\[\]]*[/\\][^\s'\",:;()\[\]]*"), "<path>"),
    (re.compile(r"\b0[xX][0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"\b(?=[\w-]*\d)(?=[\w-]*[a-zA-Z])[\w-]{12,}\b"), "<hex>"),
    (re.compile(r"\b[0-9a-fA-F]{8,}\b"), "<hex>"),
)
_STATUS_CODE: Final = re.compile(r"(?i)(\bhttp(?:/[\d.]+)?|\bstatus(?: code)?|\bcode|\berror|')([ :=]*)([1-5]\d\d)\b")
_NUMBER: Final = re.compile(r"(?<![<\w])\d+(?:\.\d+)?|(?<=[A-Za-z_])\d+(?:\.\d+)?")
_KEEP: Final = "\x00"
_SPACE: Final = re.compile(r"\s+")
_TRACEBACK: Final = "Traceback (most recent call last):"


def normalize_message(message: str) -> str:
    """The message with what varies between occurrences replaced by placeholders (see the module docstring)."""
    text = message
    if _TRACEBACK in text:
        lines = [line for line in text.splitlines() if line.strip()]
        text = lines[-1] if lines else text
    for pattern, placeholder in _RULES:
        text = pattern.sub(placeholder, text)
    # Status codes survive the number rule: digits are moved out of its reach, then back.
    text = _STATUS_CODE.sub(lambda m: m.group(1) + m.group(2) + m.group(3).translate(_HIDE), text)
    text = _NUMBER.sub("<n>", text)
    text = text.translate(_SHOW)
    return _SPACE.sub(" ", text).strip()[:MESSAGE_MAX_CHARS]


_HIDE: Final = str.maketrans("0123456789", "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09")
_SHOW: Final = str.maketrans("\x00\x01\x02\x03\x04\x05\x06\x07\x08\x09", "0123456789")


def error_fingerprint(error_type: str | None, message: str | None, node_id: str | None, workflow_id: str | None) -> str:
    """The group an error belongs to: 16 hex digits naming its type, normalised message, node and workflow."""
    return _fingerprint(error_type, normalize_message(message or ""), node_id, workflow_id)


def _fingerprint(error_type: str | None, normalized: str, node_id: str | None, workflow_id: str | None) -> str:
    parts = [error_type or "", normalized, node_id or "", workflow_id or ""]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:FINGERPRINT_HEX]


@dataclass(frozen=True, slots=True)
class Failure:
    """One counted failure: a failed node attempt, or a run that failed outside any node."""

    project: str
    fingerprint: str
    type: str
    message: str
    """Normalised."""
    node_id: str | None
    workflow_id: str | None
    run_id: str
    at: str
    """When it failed (normalised timestamp)."""

    @classmethod
    def of(
        cls,
        *,
        project: str | None,
        error_type: str | None,
        message: str | None,
        node_id: str | None,
        workflow_id: str | None,
        run_id: str,
        at: str,
    ) -> Failure:
        normalized = normalize_message(message or "")
        return cls(
            project=project or "",
            fingerprint=_fingerprint(error_type, normalized, node_id, workflow_id),
            type=error_type or "",
            message=normalized,
            node_id=node_id,
            workflow_id=workflow_id,
            run_id=run_id,
            at=at,
        )


FAILED_RUN_STATUSES: Final = frozenset({RunStatus.FAILED, RunStatus.ABORTED})
FAILED_NODE_STATUS: Final = NodeStatus.FAILED


_GROUP_KEY: Final = "project = ? AND fingerprint = ? AND hour = ?"
_READ_GROUP: Final = f"SELECT count, first_seen, last_seen, samples FROM error_groups WHERE {_GROUP_KEY}"
_READ_GROUPS: Final = (  # a join from the keys, so that each is a primary-key lookup (an IN list of rows scans)
    "SELECT g.project, g.fingerprint, g.hour, g.count, g.first_seen, g.last_seen, g.samples FROM (VALUES {}) AS k "
    "CROSS JOIN error_groups g ON g.project = k.column1 AND g.fingerprint = k.column2 AND g.hour = k.column3"
)
_READ_CHUNK: Final = 300
"""Group keys per read (three host parameters each: well under SQLite's limit of 999 in older versions)."""
_DROP_GROUP: Final = f"DELETE FROM error_groups WHERE {_GROUP_KEY}"
_WRITE_GROUPS: Final = (
    "INSERT OR REPLACE INTO error_groups (project, fingerprint, hour, type, message, node_id, workflow_id, "
    "count, first_seen, last_seen, samples)"
)
_WRITE_GROUP: Final = f"{_WRITE_GROUPS} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_Key = tuple[str, str, str]
GroupKey = _Key
"""A group row's key: project, fingerprint, UTC hour."""


@dataclass(slots=True)
class _Delta:
    failure: Failure
    count: int = 0
    first: str = "\uffff"
    last: str = ""
    samples: dict[str, str] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)


FailureDelta = _Delta
"""What a batch does to one group row (see :func:`failure_deltas`)."""


def _deltas(added: Sequence[Failure], removed: Sequence[Failure]) -> dict[_Key, _Delta]:
    deltas: dict[_Key, _Delta] = {}
    for failure, sign in [*((f, 1) for f in added), *((f, -1) for f in removed)]:
        key = (failure.project, failure.fingerprint, hour_of(failure.at))
        delta = deltas.get(key)
        if delta is None:
            delta = deltas[key] = _Delta(failure)
        delta.count += sign
        if sign > 0:
            delta.first = min(delta.first, failure.at)
            delta.last = max(delta.last, failure.at)
            delta.samples[failure.run_id] = max(delta.samples.get(failure.run_id, ""), failure.at)
        else:
            delta.gone.add(failure.run_id)
    return deltas


def _merged(key: _Key, delta: _Delta, old: Sequence[Any] | None) -> tuple[Any, ...] | None:
    """The group row after ``delta`` (None: the group is empty and goes)."""
    count, first, last = delta.count, delta.first, delta.last
    kept: dict[str, str] = {}
    if old is not None:
        old_count, old_first, old_last, old_samples = old
        count += int(old_count)
        first, last = min(first, str(old_first)), max(last, str(old_last))
        kept = {str(run_id): str(at) for at, run_id in json.loads(old_samples)}
    if count <= 0:
        return None
    for run_id in delta.gone:
        kept.pop(run_id, None)
    for run_id, at in delta.samples.items():
        kept[run_id] = max(kept.get(run_id, ""), at)
    newest = sorted(((at, run_id) for run_id, at in kept.items()), reverse=True)[:ERROR_GROUP_SAMPLES]
    failure = delta.failure
    samples = json.dumps([list(pair) for pair in sorted(newest)])
    return (*key, failure.type, failure.message, failure.node_id, failure.workflow_id, count, first, last, samples)


async def record_failures(conn: WriteConnection, added: Sequence[Failure], removed: Sequence[Failure]) -> None:
    """Add and take away failures (inside the caller's transaction).

    A removed failure (a fold that changed its mind, a rebuild) lowers the count; first and last seen stay.
    The groups a batch touches are read with one statement per :data:`_READ_CHUNK` keys and written back
    with one: each statement is a hand-off to the database thread, so a flood of distinct errors does not
    cost two per group. The rows go back in multi-row statements (:mod:`._bulk`: no hand-back of the
    interpreter lock per row, as ``executemany`` would).
    """
    deltas = _deltas(added, removed)
    if not deltas:
        return
    keys = list(deltas)
    stored: dict[_Key, tuple[Any, ...]] = {}
    for start in range(0, len(keys), _READ_CHUNK):
        part = keys[start : start + _READ_CHUNK]
        sql = _READ_GROUPS.format(", ".join(["(?, ?, ?)"] * len(part)))
        for project, fingerprint, hour, *old in await conn.execute_fetchall(sql, list(chain.from_iterable(part))):
            stored[project, fingerprint, hour] = tuple(old)
    written, dropped = group_writes(deltas, stored)
    if written:
        await insert_rows(conn, _WRITE_GROUPS, written, width=11)
    if dropped:
        await conn.executemany(_DROP_GROUP, dropped)


def failure_deltas(added: Sequence[Failure], removed: Sequence[Failure]) -> dict[GroupKey, FailureDelta]:
    """What failures added and taken away do to each group row (project, fingerprint, hour): engine-neutral."""
    return _deltas(added, removed)


def group_writes(
    deltas: Mapping[GroupKey, FailureDelta], stored: Mapping[GroupKey, Sequence[Any]]
) -> tuple[list[tuple[Any, ...]], list[GroupKey]]:
    """The group rows to write (:data:`ERROR_GROUPS_SCHEMA`'s columns in order) and the keys of the stored rows
    left empty, from the deltas and the stored rows' ``(count, first_seen, last_seen, samples)``: engine-neutral."""
    written: list[tuple[Any, ...]] = []
    dropped: list[GroupKey] = []
    for key, delta in deltas.items():
        row = _merged(key, delta, stored.get(key))
        if row is not None:
            written.append(row)
        elif key in stored:
            dropped.append(key)
    return written, dropped


def record_failures_sync(conn: sqlite3.Connection, added: Sequence[Failure]) -> None:
    """:func:`record_failures` (adding only) on a plain sqlite3 connection: migrations fill groups with it."""
    for key, delta in _deltas(added, []).items():
        old = conn.execute(_READ_GROUP, key).fetchone()
        row = _merged(key, delta, None if old is None else tuple(old))
        if row is not None:
            conn.execute(_WRITE_GROUP, row)


async def forget_purged_samples(conn: aiosqlite.Connection) -> None:
    """Drop the runs of ``temp.purge_set`` from the samples (their failures keep counting)."""
    rows = await conn.execute_fetchall(
        "SELECT project, fingerprint, hour, samples FROM error_groups g WHERE EXISTS ("
        "SELECT 1 FROM json_each(g.samples) j WHERE j.value ->> '$[1]' IN "
        "(SELECT run_id FROM temp.purge_set WHERE space = g.project))"  # a group's runs are of its project
    )
    for project, fingerprint, hour, samples in rows:
        purged = {
            str(r[0])
            for r in await conn.execute_fetchall(
                "SELECT run_id FROM temp.purge_set WHERE space = ? "
                "AND run_id IN (SELECT value ->> '$[1]' FROM json_each(?))",
                (project, samples),
            )
        }
        left = [pair for pair in json.loads(samples) if pair[1] not in purged]
        await conn.execute(
            "UPDATE error_groups SET samples = ? WHERE project = ? AND fingerprint = ? AND hour = ?",
            (json.dumps(left), project, fingerprint, hour),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorGroupQuery:
    """Which error groups to answer, biggest first."""

    workflow_id: str | None = None
    since: str | None = None
    """Failures in the UTC hours from the one holding this normalised timestamp on."""
    until: str | None = None
    """Failures in the UTC hours starting before this normalised timestamp."""
    project: str | None = None
    """Set from the API key: only this project's groups."""
    limit: int = 50


def group_json(row: Sequence[Any]) -> dict[str, Any]:
    """A group as the API answers it, from ``fingerprint, type, message, node_id, workflow_id, count, first_seen,
    last_seen`` and its rows' samples, one JSON ``[project, samples]`` per line (:data:`SAMPLES_BY_PROJECT_SQL`).

    ``sample_runs`` names each sample run with its project (None for none: runs are per project); ``sample_run_ids``
    is the same runs' ids in the same order, as the API answered before it had ``sample_runs``.
    """
    fingerprint, type_, message, node_id, workflow_id, count, first, last, samples = row
    found: list[tuple[str, str, str]] = []
    for text in str(samples).split("\n"):
        project, pairs = json.loads(text)
        found += [(str(at), str(run_id), str(project)) for at, run_id in pairs]
    newest: list[dict[str, Any]] = []
    for _, run_id, project in sorted(found, reverse=True):
        sample = {"run_id": run_id, "project": project or None}
        if sample not in newest:
            newest.append(sample)
    newest = newest[:ERROR_GROUP_SAMPLES]
    return {
        "fingerprint": fingerprint,
        "type": type_,
        "message": message,
        "node_id": node_id,
        "workflow_id": workflow_id,
        "count": int(count),
        "first_seen": first,
        "last_seen": last,
        "sample_run_ids": [sample["run_id"] for sample in newest],
        "sample_runs": newest,
    }


def empty_range(query: ErrorGroupQuery) -> bool:
    """Whether the query's time range is empty: ``until`` at or before ``since``. It matches no group, though the
    hours the two fall in would (``since`` 10:30 and ``until`` 10:29 both in the 10:00 hour)."""
    return query.since is not None and query.until is not None and query.until <= query.since


def error_groups_where(query: ErrorGroupQuery) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause (``?`` parameters; empty for none) of the group rows ``query`` reads: engine-neutral."""
    clauses: list[str] = []
    params: list[Any] = []
    if query.project is not None:
        clauses.append("project = ?")
        params.append(query.project)
    if query.workflow_id is not None:
        clauses.append("workflow_id = ?")
        params.append(query.workflow_id)
    if query.since is not None:
        clauses.append("hour >= ?")
        params.append(hour_of(query.since))
    if query.until is not None:
        clauses.append("hour < ?")
        params.append(query.until)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


async def error_groups(conn: aiosqlite.Connection, query: ErrorGroupQuery) -> list[dict[str, Any]]:
    """The groups matching ``query``, biggest first (then the most recent), as the API answers them; none for an
    empty range."""
    if empty_range(query):
        return []
    where, params = error_groups_where(query)
    sql = (
        "SELECT fingerprint, min(type), min(message), min(node_id), min(workflow_id), sum(count), "
        f"min(first_seen), max(last_seen), group_concat({SAMPLES_BY_PROJECT_SQL}, char(10)) "
        f"FROM error_groups{where} GROUP BY fingerprint "
        "ORDER BY sum(count) DESC, max(last_seen) DESC, fingerprint LIMIT ?"
    )
    rows = await conn.execute_fetchall(sql, [*params, query.limit])
    return [group_json(tuple(row)) for row in rows]


def with_fingerprints(run: dict[str, Any]) -> dict[str, Any]:
    """A run's JSON whose error says the group it belongs to (``error.fingerprint``); changes ``run`` in place."""
    error = run.get("error")
    if isinstance(error, dict):
        error["fingerprint"] = error_fingerprint(
            error.get("type"), error.get("message"), error.get("node_id"), run.get("workflow_id")
        )
    return run
