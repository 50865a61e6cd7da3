"""Stored OTLP log records, linked to runs and node attempts through their trace and span ids.

The OTLP stage (:mod:`flowledger.receiver.otlp`) turns export requests into
:class:`OtlpLogRow` values. A record is stored once (its key is a digest of the
record, its resource, scope and project: an exporter's retry is a
duplicate). Links are made when the records are read, as for spans: a
record whose span id is a node attempt's span id belongs to that attempt,
one whose span id is the run's own span to the run, so it does not matter
whether the events or the logs arrived first. The table is bounded: at most
``max_records`` rows, the oldest go first.

A record whose span is a run's or a node attempt's is also copied, once,
into the ``logs`` table beside the lines the SDK captured for that attempt
(:mod:`~flowledger.receiver.store._logs`, ``source`` ``otlp``), so the run's
detail, ``flowledger show --logs`` and the export show it: when it is
stored if its run is known then, otherwise by :func:`link_pending` once the
run's events arrive (the receiver calls it every few seconds for records
received within ``LINK_WINDOW_S``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import aiosqlite

from flowledger._wire import format_ts
from flowledger.receiver.store._bulk import insert_rows
from flowledger.receiver.store._entry import LEDGER_PROJECT
from flowledger.receiver.store._logs import LogRow, LogSource, append_log_rows, level_from_severity
from flowledger.receiver.store._namespace import NAMESPACES_SQL, one_namespace, run_scope
from flowledger.receiver.store._spans import loads_stored

__all__ = [
    "LINK_WINDOW_S",
    "OTLP_LOGS_SCHEMA",
    "OTLP_LOG_COLUMNS",
    "PENDING_COLUMNS",
    "RECORD_COLUMNS",
    "OtlpLogRow",
    "insert_logs",
    "link_pending",
    "linked_log_row",
    "records_json",
    "select_logs",
]

LINK_WINDOW_S: Final = 600.0
"""How long after it was received a record not linked yet is still looked for (its run's events may be late)."""
LINK_BATCH_MAX: Final = 2000
"""Most pending records one linking pass looks at."""
_LEVEL_NAMES: Final = {50: "CRITICAL", 40: "ERROR", 30: "WARNING", 20: "INFO", 10: "DEBUG", 5: "TRACE"}

OTLP_LOGS_SCHEMA: Final = """
-- OTLP log records (/v1/logs and gRPC). Times are ns since the epoch; ids lowercase hex (NULL when absent).
CREATE TABLE otlp_logs (
    log_id INTEGER PRIMARY KEY,
    record_key TEXT NOT NULL UNIQUE,
    project TEXT, trace_id TEXT, span_id TEXT,
    time_ns INTEGER NOT NULL, observed_ns INTEGER,
    severity_number INTEGER NOT NULL, severity_text TEXT,
    body TEXT NOT NULL, attributes TEXT NOT NULL, event_name TEXT,
    service_name TEXT, resource TEXT NOT NULL, scope_name TEXT, scope_version TEXT,
    received_at TEXT NOT NULL,
    linked INTEGER NOT NULL DEFAULT 0       -- 1 once copied beside its run's or attempt's lines (table logs)
);
CREATE INDEX otlp_logs_by_span ON otlp_logs (trace_id, span_id) WHERE trace_id IS NOT NULL;
CREATE INDEX otlp_logs_pending ON otlp_logs (received_at) WHERE linked = 0 AND trace_id IS NOT NULL;
"""

OTLP_LOG_COLUMNS: Final = (
    "record_key",
    "project",
    "trace_id",
    "span_id",
    "time_ns",
    "observed_ns",
    "severity_number",
    "severity_text",
    "body",
    "attributes",
    "event_name",
    "service_name",
    "resource",
    "scope_name",
    "scope_version",
    "received_at",
)
"""Columns of the ``otlp_logs`` table, in the order of :meth:`OtlpLogRow.values`."""
_LOOKUP_CHUNK: Final = 500
PENDING_COLUMNS: Final = (
    "log_id, project, trace_id, span_id, time_ns, severity_number, severity_text, body, attributes, scope_name"
)
"""What linking reads of a record not linked yet (:func:`linked_log_row`)."""
RECORD_COLUMNS: Final = ", ".join(OTLP_LOG_COLUMNS[1:])
"""What a record's API shape is made of (:func:`records_json`)."""


@dataclass(frozen=True, slots=True)
class OtlpLogRow:
    """One log record as stored; ``body``, ``attributes`` and ``resource`` are JSON text."""

    record_key: str
    project: str | None
    trace_id: str | None
    span_id: str | None
    time_ns: int
    observed_ns: int | None
    severity_number: int
    severity_text: str | None
    body: str
    attributes: str
    event_name: str | None
    service_name: str | None
    resource: str
    scope_name: str | None
    scope_version: str | None
    received_at: str

    def values(self) -> tuple[Any, ...]:
        """The row's values in OTLP_LOG_COLUMNS order."""
        return tuple(getattr(self, name) for name in OTLP_LOG_COLUMNS)


async def insert_logs(conn: aiosqlite.Connection, rows: Sequence[OtlpLogRow], *, max_records: int) -> int:
    """Store the records not stored yet, and link them (inside the caller's transaction); return how many were new."""
    before = conn.total_changes
    head = f"INSERT OR IGNORE INTO otlp_logs ({', '.join(OTLP_LOG_COLUMNS)})"
    await insert_rows(conn, head, [row.values() for row in rows], width=len(OTLP_LOG_COLUMNS))
    stored = conn.total_changes - before
    if stored:
        (last,) = next(iter(await conn.execute_fetchall("SELECT max(log_id) FROM otlp_logs")))
        await conn.execute("DELETE FROM otlp_logs WHERE log_id <= ?", [int(last) - max_records])
        keys = [row.record_key for row in rows if row.trace_id is not None]
        for start in range(0, len(keys), _LOOKUP_CHUNK):
            await link_pending(conn, keys=keys[start : start + _LOOKUP_CHUNK])
    return stored


def _message(body: str) -> str:
    value = loads_stored(body)
    if isinstance(value, str):
        return value
    return "" if value is None else json.dumps(value, separators=(",", ":"), ensure_ascii=False)


async def link_pending(
    conn: aiosqlite.Connection, *, keys: Sequence[str] = (), since: str | None = None, limit: int = LINK_BATCH_MAX
) -> int:
    """Copy records not linked yet whose span is a run's or node attempt's into ``logs``; return how many.

    ``keys`` limits the pass to those records (just stored); otherwise records received at ``since`` or later.
    Inside the caller's transaction.
    """
    where, params = "linked = 0 AND trace_id IS NOT NULL", list[Any]()
    if keys:
        where += f" AND record_key IN ({', '.join('?' * len(keys))})"
        params.extend(keys)
    elif since is not None:
        where += " AND received_at >= ?"
        params.append(since)
    pending = list(
        await conn.execute_fetchall(f"SELECT {PENDING_COLUMNS} FROM otlp_logs WHERE {where} LIMIT ?", [*params, limit])
    )
    if not pending:
        return 0
    out: list[LogRow] = []
    linked: list[int] = []
    for project in {row[1] for row in pending}:
        mine = [row for row in pending if row[1] == project]
        links = await _links(conn, sorted({str(row[2]) for row in mine}), project)
        for row in mine:
            found = links.get((row[2], row[3]))
            if found is None:
                continue
            out.append(linked_log_row(row, found[0], found[1], run_project=found[4]))
            linked.append(int(row[0]))
    if out:
        await append_log_rows(conn, out)
        for start in range(0, len(linked), _LOOKUP_CHUNK):
            part = linked[start : start + _LOOKUP_CHUNK]
            await conn.execute(f"UPDATE otlp_logs SET linked = 1 WHERE log_id IN ({', '.join('?' * len(part))})", part)
    return len(out)


def linked_log_row(
    pending: Sequence[Any], run_id: object, node_id: object, *, run_project: str | None = None
) -> LogRow:
    """The ``logs`` line of a pending record (columns :data:`PENDING_COLUMNS`) whose span is a run's or an attempt's.

    The line goes with its run, in the run's project (a record sent without an API key has none of its own).
    """
    _, project, trace_id, span_id, time_ns, severity, severity_text, body, attributes, scope_name = pending
    level = level_from_severity(int(severity))
    extra = loads_stored(attributes)
    stack = extra.get("exception.stacktrace")
    return LogRow(
        run_id=str(run_id),
        span_id=span_id if node_id is not None else None,
        ts=format_ts(int(time_ns)),
        level=level,
        level_name=severity_text or _LEVEL_NAMES.get(level, ""),
        logger=scope_name,
        message=_message(body),
        exception=stack if isinstance(stack, str) else None,
        trace_id=trace_id,
        log_span_id=span_id,
        source=LogSource.OTLP,
        attributes=attributes if extra else None,
        project=project if project is not None else run_project,
    )


def records_json(
    rows: Sequence[Sequence[Any]], links: dict[tuple[str, str], Any], run_id: str | None
) -> list[dict[str, Any]]:
    """The API shape of records read as :data:`RECORD_COLUMNS`, each with its run and attempt (of ``run_id`` only)."""
    out = []
    for row in rows:
        record = _log_json(row)
        run, node_id, attempt, item, *_ = links.get((record["trace_id"], record["span_id"]), (None, None, None, None))
        record.update(run_id=run, node_id=node_id, attempt=attempt, item=item)
        if run_id is None or run == run_id or run is None:
            out.append(record)
    return out


def _log_json(row: Sequence[Any]) -> dict[str, Any]:
    values = dict(zip(OTLP_LOG_COLUMNS[1:], row, strict=True))
    observed = values["observed_ns"]
    return {
        "time": format_ts(int(values["time_ns"])),
        "time_unix_nano": values["time_ns"],
        "observed_time_unix_nano": observed,
        "severity_number": values["severity_number"],
        "severity_text": values["severity_text"],
        "body": loads_stored(values["body"]),
        "attributes": loads_stored(values["attributes"]),
        "event_name": values["event_name"],
        "trace_id": values["trace_id"],
        "span_id": values["span_id"],
        "service_name": values["service_name"],
        "resource": loads_stored(values["resource"]),
        "scope": {"name": values["scope_name"], "version": values["scope_version"]},
        "project": values["project"],
    }


async def _links(conn: aiosqlite.Connection, trace_ids: list[str], project: str | None) -> dict[tuple[str, str], Any]:
    """(trace_id, span_id) -> (run_id, node_id, attempt, item, project) for the node attempts and runs of these
    traces."""
    links: dict[tuple[str, str], Any] = {}
    scope, params = (" AND r.project = ?", [project]) if project is not None else ("", [])
    for start in range(0, len(trace_ids), _LOOKUP_CHUNK):
        part = trace_ids[start : start + _LOOKUP_CHUNK]
        marks = ", ".join("?" * len(part))
        for trace_id, run_id, span_id, node_id, attempt, item, run_project in await conn.execute_fetchall(
            "SELECT r.trace_id, r.run_id, n.span_id, n.node_id, n.attempt, n.item, r.project FROM runs r "
            "JOIN node_runs n ON n.run_id = r.run_id AND ifnull(n.project, '') = ifnull(r.project, '') "
            f"WHERE r.trace_id IN ({marks}){scope}",
            [*part, *params],
        ):
            links[(str(trace_id), str(span_id))] = (run_id, node_id, attempt, item, run_project)
        for trace_id, run_id, span_id, run_project in await conn.execute_fetchall(
            "SELECT r.trace_id, r.run_id, json_extract(p.body, '$.data.span_id'), r.project FROM runs r "
            "JOIN ledger l ON l.event_id = r.started_event_id "
            f"AND {LEDGER_PROJECT.format('l.')} = ifnull(r.project, '') JOIN payloads p ON p.seq = l.seq "
            f"WHERE r.trace_id IN ({marks}){scope}",
            [*part, *params],
        ):
            if span_id:
                links.setdefault((str(trace_id), str(span_id)), (run_id, None, None, None, run_project))
    return links


async def select_logs(
    conn: aiosqlite.Connection,
    *,
    trace_id: str | None,
    run_id: str | None,
    project: str | None,
    limit: int,
) -> list[dict[str, Any]] | None:
    """Records of one trace (or of one run's trace; or the newest) in time order, each with its run and attempt.

    None when ``run_id`` names no stored run (of the project).
    """
    scope, params = (" AND project = ?", [project]) if project is not None else ("", [])
    if run_id is not None:
        space = one_namespace(run_id, project, await conn.execute_fetchall(NAMESPACES_SQL, (run_id,)))
        if space is None:
            return None
        found = list(await conn.execute_fetchall(f"SELECT trace_id FROM runs WHERE {run_scope()}", (run_id, space)))
        if not found:
            return None
        if found[0][0] is None or (trace_id is not None and found[0][0] != trace_id):
            return []
        trace_id = str(found[0][0])
    if trace_id is not None:
        sql = f"SELECT {RECORD_COLUMNS} FROM otlp_logs WHERE trace_id = ?{scope}"
        rows = list(await conn.execute_fetchall(f"{sql} ORDER BY time_ns, log_id LIMIT ?", [trace_id, *params, limit]))
    else:
        where = f" WHERE {scope[len(' AND ') :]}" if scope else ""
        sql = f"SELECT {RECORD_COLUMNS} FROM otlp_logs{where} ORDER BY log_id DESC LIMIT ?"
        rows = sorted(await conn.execute_fetchall(sql, [*params, limit]), key=lambda row: row[3])
    traces = sorted({str(row[1]) for row in rows if row[1] is not None})
    links = await _links(conn, traces, project) if traces else {}
    return records_json(rows, links, run_id)
