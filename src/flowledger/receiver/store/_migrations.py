"""Versioned schema migrations of the SQLite store.

The database's ``PRAGMA user_version`` is the number of migrations applied.
:func:`migrate` applies the missing ones, each in its own transaction, and is
a no-op on an up-to-date database; a database whose version is newer than
this code knows is refused with :class:`SchemaVersionError` before anything
is touched.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from flowledger._exceptions import SchemaVersionError, StoreError

__all__ = ["APPLICATION_ID", "MIGRATIONS", "SCHEMA_VERSION", "migrate", "schema_version"]

APPLICATION_ID: Final = 0x464C4447
"""``PRAGMA application_id`` of a flowledger database ("FLDG")."""

_V1: Final = """
CREATE TABLE ledger (
    seq         INTEGER PRIMARY KEY,        -- position in the hash chain, from 1
    event_id    TEXT NOT NULL UNIQUE,
    run_id      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    ts          TEXT NOT NULL,
    received_at TEXT NOT NULL,              -- receiver clock; not covered by the hash
    body        TEXT NOT NULL,              -- canonical JSON of the event
    prev_hash   BLOB NOT NULL,
    hash        BLOB NOT NULL
);
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: UPDATE is refused'); END;
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: DELETE is refused'); END;

CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    project TEXT, workflow_id TEXT, workflow_name TEXT, workflow_version TEXT,
    status TEXT NOT NULL, trigger_type TEXT, dry_run INTEGER,
    started_at TEXT, completed_at TEXT, duration_ms REAL,
    error_type TEXT, error_message TEXT, error_node_id TEXT,
    cost_tokens INTEGER, cost_tool_calls INTEGER, cost_external_requests INTEGER, cost_usd REAL, cost_key TEXT,
    input_seq INTEGER, output_seq INTEGER,
    trace_id TEXT, heartbeat_interval_s REAL, last_seen_at TEXT, stuck_reason TEXT,
    started_event_id TEXT, finished_event_id TEXT
) WITHOUT ROWID;
CREATE INDEX runs_by_start ON runs (started_at DESC, run_id DESC);
CREATE INDEX runs_by_workflow ON runs (workflow_id, started_at DESC, run_id DESC);
CREATE INDEX runs_by_status ON runs (status, started_at DESC, run_id DESC);
CREATE INDEX runs_by_project ON runs (project, started_at DESC, run_id DESC);
CREATE INDEX runs_alive ON runs (last_seen_at) WHERE status = 'running';

CREATE TABLE node_runs (
    run_id TEXT NOT NULL, span_id TEXT NOT NULL,
    node_id TEXT, attempt INTEGER, item INTEGER, status TEXT, skip_reason TEXT,
    started_at TEXT, completed_at TEXT, duration_ms REAL,
    error_type TEXT, error_message TEXT,
    effect INTEGER, idempotency_key TEXT, simulated INTEGER, duplicate INTEGER, location TEXT,
    parent_span_id TEXT,
    cost_tokens INTEGER, cost_tool_calls INTEGER, cost_external_requests INTEGER, cost_usd REAL,
    input_key TEXT, input_seq INTEGER, output_seq INTEGER,
    started_event_id TEXT, finished_event_id TEXT,
    PRIMARY KEY (run_id, span_id)
) WITHOUT ROWID;

-- Payloads (inputs, outputs, stacks) are not copied into the projections:
-- input_seq / output_seq point at the ledger row that holds them, so the
-- narrow rows stay small and each payload is stored once.

-- Per SDK process: the highest producer_seq seen and how many events arrived.
CREATE TABLE producers (
    producer_id TEXT PRIMARY KEY,
    max_seq INTEGER NOT NULL,
    events INTEGER NOT NULL
) WITHOUT ROWID;
"""

_V2_SPANS: Final = """
-- Spans received over OTLP (/v1/traces), once per (trace_id, span_id). Times are ns since the epoch.
CREATE TABLE spans (
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_span_id TEXT,
    name TEXT NOT NULL, kind INTEGER NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
    status_code INTEGER NOT NULL, status_message TEXT,
    service_name TEXT, scope_name TEXT, scope_version TEXT,
    attributes TEXT NOT NULL, resource TEXT NOT NULL, events TEXT NOT NULL, links TEXT NOT NULL,
    project TEXT, received_at TEXT NOT NULL,
    PRIMARY KEY (trace_id, span_id)
) WITHOUT ROWID;
CREATE INDEX spans_by_start ON spans (start_ns);
-- Linking a trace's spans to its runs (runs are found by trace id).
CREATE INDEX runs_by_trace ON runs (trace_id) WHERE trace_id IS NOT NULL;
"""

_V3_VIEWER: Final = """
-- The history viewer. runs_facts holds every column its run filters and summary
-- cards read, in newest-first order: a filtered page, a time range and the cards
-- are scans of this index alone, never of the table.
CREATE INDEX runs_facts ON runs (
    started_at DESC, run_id DESC, status, trigger_type, dry_run, workflow_id, project, duration_ms, cost_usd
);
-- A run's node attempts in start order, paged (a run may have 10,000 of them).
CREATE INDEX node_runs_by_start ON node_runs (run_id, started_at, attempt, item, span_id);
"""

_V4_APPEND_ONLY: Final = """
-- INSERT OR REPLACE deletes the row it replaces without firing the DELETE trigger:
-- a new row must come right after the last one and bring an event_id not stored yet.
CREATE TRIGGER ledger_append_only BEFORE INSERT ON ledger
WHEN NEW.seq IS NOT (SELECT coalesce(max(seq), 0) + 1 FROM ledger)
  OR EXISTS (SELECT 1 FROM ledger WHERE event_id = NEW.event_id)
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: a row goes after the last one, with a new event_id'); END;
"""

_V5_FINISH_CONFLICTS: Final = """
-- The statuses other run_finished events of a run reported against the one kept (JSON list, or NULL).
ALTER TABLE runs ADD COLUMN finish_conflicts TEXT;
"""

_V6_SPANS_PER_PROJECT: Final = """
-- A span is stored once per (trace_id, span_id) *and project*: a client of one project that sends
-- another project's ids first no longer turns the real span into a silent duplicate.
CREATE TABLE spans_per_project (
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_span_id TEXT,
    name TEXT NOT NULL, kind INTEGER NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
    status_code INTEGER NOT NULL, status_message TEXT,
    service_name TEXT, scope_name TEXT, scope_version TEXT,
    attributes TEXT NOT NULL, resource TEXT NOT NULL, events TEXT NOT NULL, links TEXT NOT NULL,
    project TEXT, received_at TEXT NOT NULL
);
INSERT INTO spans_per_project SELECT
    trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, status_code, status_message,
    service_name, scope_name, scope_version, attributes, resource, events, links, project, received_at
FROM spans;
DROP TABLE spans;
ALTER TABLE spans_per_project RENAME TO spans;
CREATE UNIQUE INDEX spans_once ON spans (trace_id, span_id, ifnull(project, ''));
CREATE INDEX spans_by_start ON spans (start_ns);
"""

_V7_PRODUCER_TAILS: Final = """
-- Per producer: its project (the key's, when keys are on), its newest event by its own clock and
-- that event's run. A producer silent since before a cutoff whose run never finished may have lost
-- its tail (a SIGKILLed process leaves no gap behind its last delivered event).
ALTER TABLE producers ADD COLUMN project TEXT;
ALTER TABLE producers ADD COLUMN last_ts TEXT;
ALTER TABLE producers ADD COLUMN last_run_id TEXT;
CREATE INDEX producers_by_last_ts ON producers (last_ts);
CREATE INDEX producers_by_project ON producers (project);
"""

MIGRATIONS: Final[tuple[str, ...]] = (
    _V1,
    _V2_SPANS,
    _V3_VIEWER,
    _V4_APPEND_ONLY,
    _V5_FINISH_CONFLICTS,
    _V6_SPANS_PER_PROJECT,
    _V7_PRODUCER_TAILS,
)
"""Migration ``i`` brings the schema from version ``i`` to ``i + 1``."""
SCHEMA_VERSION: Final = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    """The number of migrations applied to the database."""
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema up to date; return how many migrations ran."""
    current = schema_version(conn)
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    if app_id not in (0, APPLICATION_ID):
        raise StoreError("this file is an SQLite database of another application, not a flowledger database")
    if current > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the database has schema version {current}, newer than the {SCHEMA_VERSION} this flowledger knows; "
            "upgrade flowledger to open it"
        )
    ran = 0
    for version in range(current, SCHEMA_VERSION):
        try:
            conn.execute("BEGIN IMMEDIATE")
            # Another process may have migrated while we waited for the lock.
            if schema_version(conn) > version:
                conn.execute("ROLLBACK")
                continue
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"migrating the database to schema version {version + 1} failed: {exc}") from exc
        ran += 1
    return ran


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (triggers keep their inner ``;``)."""
    out: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        if line.lstrip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            out.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        out.append(buffer.strip())
    return out
