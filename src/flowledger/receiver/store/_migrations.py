"""Versioned schema migrations of the SQLite store.

The database's ``PRAGMA user_version`` is the number of migrations applied.
:func:`migrate` applies the missing ones, each in its own transaction, and is
a no-op on an up-to-date database; a database whose version is newer than
this code knows is refused with :class:`SchemaVersionError` before anything
is touched.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Final

from flowledger._exceptions import SchemaVersionError, StoreError
from flowledger.receiver.store._entry import entry_bytes, entry_hash, migrated_genesis, payload_hash
from flowledger.receiver.store._error_groups import ERROR_GROUPS_SCHEMA
from flowledger.receiver.store._logs import LOGS_SCHEMA
from flowledger.receiver.store._otlp_logs import OTLP_LOGS_SCHEMA
from flowledger.receiver.store._otlp_metrics import METRICS_SCHEMA
from flowledger.receiver.store._rollups import backfill_rollups
from flowledger.receiver.store._sampled import SAMPLED_OUT_SCHEMA
from flowledger.receiver.store._search import SEARCH_INDEX_BY_STATEMENT, SEARCH_SCHEMA
from flowledger.receiver.store._stats import (
    STATS_SCHEMA,
    keep_totals_sync,
    store_percentiles_sync,
    upgrade_rollups_sync,
)
from flowledger.receiver.store._time import normalize_ts
from flowledger.receiver.store._tree import MERKLE_SCHEMA, backfill
from flowledger.receiver.store._verify import FORMAT1_COLUMNS, Format1Walker

__all__ = [
    "APPLICATION_ID",
    "LEDGER_V2_SCHEMA",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Migration",
    "foreign_database",
    "migrate",
    "schema_version",
]

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

_V4_QUERY: Final = """
-- GET /api/runs by workflow and status(es): one index range per status, newest first, whatever the mix.
CREATE INDEX runs_by_workflow_status ON runs (workflow_id, status, started_at DESC, run_id DESC);
"""

_COUNT_KEY_NEW: Final = (
    "coalesce(NEW.workflow_id, ''), NEW.status, coalesce(NEW.trigger_type, ''), coalesce(NEW.dry_run, -1), "
    "coalesce(NEW.project, '')"
)
_NANOS: Final = "coalesce(CAST(round({}.cost_usd * 1e9) AS INTEGER), 0)"
_V5_RUN_COUNTS: Final = f"""
-- The viewer's summary cards without a time range or a search: runs and exact cost (nano-dollars) per
-- (workflow, status, trigger, mode, project), kept by triggers on runs, so the cards over a million runs
-- read a few hundred rows instead of scanning an index. A NULL key part is stored as '' (dry_run: -1).
CREATE TABLE run_counts (
    workflow_id TEXT NOT NULL, status TEXT NOT NULL, trigger_type TEXT NOT NULL, dry_run INTEGER NOT NULL,
    project TEXT NOT NULL, runs INTEGER NOT NULL, cost_usd_nanos INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, status, trigger_type, dry_run, project)
) WITHOUT ROWID;
INSERT INTO run_counts
SELECT coalesce(workflow_id, ''), status, coalesce(trigger_type, ''), coalesce(dry_run, -1), coalesce(project, ''),
       count(*), sum({_NANOS.format("runs")})
FROM runs GROUP BY 1, 2, 3, 4, 5;
-- INSERT OR REPLACE (the projector's save) fires no DELETE trigger (recursive_triggers is off): the row it
-- replaces is taken out of the counts before the insert, and the new one added after it.
CREATE TRIGGER run_counts_before_insert BEFORE INSERT ON runs
BEGIN
    UPDATE run_counts SET runs = runs - 1,
        cost_usd_nanos = cost_usd_nanos - (SELECT {_NANOS.format("o")} FROM runs o WHERE o.run_id = NEW.run_id)
    WHERE (workflow_id, status, trigger_type, dry_run, project) = (
        SELECT coalesce(o.workflow_id, ''), o.status, coalesce(o.trigger_type, ''), coalesce(o.dry_run, -1),
               coalesce(o.project, '')
        FROM runs o WHERE o.run_id = NEW.run_id);
END;
CREATE TRIGGER run_counts_after_insert AFTER INSERT ON runs
BEGIN
    INSERT INTO run_counts VALUES ({_COUNT_KEY_NEW}, 1, {_NANOS.format("NEW")})
    ON CONFLICT (workflow_id, status, trigger_type, dry_run, project)
    DO UPDATE SET runs = runs + 1, cost_usd_nanos = cost_usd_nanos + excluded.cost_usd_nanos;
END;
CREATE TRIGGER run_counts_after_update AFTER UPDATE OF workflow_id, status, trigger_type, dry_run, project, cost_usd
ON runs
BEGIN
    UPDATE run_counts SET runs = runs - 1, cost_usd_nanos = cost_usd_nanos - {_NANOS.format("OLD")}
    WHERE (workflow_id, status, trigger_type, dry_run, project) = (
        coalesce(OLD.workflow_id, ''), OLD.status, coalesce(OLD.trigger_type, ''), coalesce(OLD.dry_run, -1),
        coalesce(OLD.project, ''));
    INSERT INTO run_counts VALUES ({_COUNT_KEY_NEW}, 1, {_NANOS.format("NEW")})
    ON CONFLICT (workflow_id, status, trigger_type, dry_run, project)
    DO UPDATE SET runs = runs + 1, cost_usd_nanos = cost_usd_nanos + excluded.cost_usd_nanos;
END;
CREATE TRIGGER run_counts_after_delete AFTER DELETE ON runs
BEGIN
    UPDATE run_counts SET runs = runs - 1, cost_usd_nanos = cost_usd_nanos - {_NANOS.format("OLD")}
    WHERE (workflow_id, status, trigger_type, dry_run, project) = (
        coalesce(OLD.workflow_id, ''), OLD.status, coalesce(OLD.trigger_type, ''), coalesce(OLD.dry_run, -1),
        coalesce(OLD.project, ''));
END;
"""

_V6_APPEND_ONLY: Final = """
-- INSERT OR REPLACE deletes the row it replaces without firing the DELETE trigger:
-- a new row must come right after the last one and bring an event_id not stored yet.
CREATE TRIGGER ledger_append_only BEFORE INSERT ON ledger
WHEN NEW.seq IS NOT (SELECT coalesce(max(seq), 0) + 1 FROM ledger)
  OR EXISTS (SELECT 1 FROM ledger WHERE event_id = NEW.event_id)
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: a row goes after the last one, with a new event_id'); END;
"""

_V7_FINISH_CONFLICTS: Final = """
-- The statuses other run_finished events of a run reported against the one kept (JSON list, or NULL).
ALTER TABLE runs ADD COLUMN finish_conflicts TEXT;
"""

_V8_SPANS_PER_PROJECT: Final = """
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

_V9_PRODUCER_TAILS: Final = """
-- Per producer: its project (the key's, when keys are on), its newest event by its own clock and
-- that event's run. A producer silent since before a cutoff whose run never finished may have lost
-- its tail (a SIGKILLed process leaves no gap behind its last delivered event).
ALTER TABLE producers ADD COLUMN project TEXT;
ALTER TABLE producers ADD COLUMN last_ts TEXT;
ALTER TABLE producers ADD COLUMN last_run_id TEXT;
CREATE INDEX producers_by_last_ts ON producers (last_ts);
CREATE INDEX producers_by_project ON producers (project);
"""

LEDGER_V2_SCHEMA: Final = """
-- Format 2: each row is an entry (metadata and the payload's sha256, canonical JSON) chained by
-- hash = sha256(prev_hash || entry); the payload (the event's canonical body) lives in payloads.
CREATE TABLE ledger (
    seq          INTEGER PRIMARY KEY,       -- position in the hash chain, from 1
    event_id     TEXT NOT NULL UNIQUE,
    run_id       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    ts           TEXT NOT NULL,
    received_at  TEXT NOT NULL,             -- receiver clock; not covered by the hash
    entry        BLOB NOT NULL,             -- canonical UTF-8 JSON: what the hash covers
    payload_hash BLOB NOT NULL,             -- sha256 of the payload, as in the entry
    prev_hash    BLOB NOT NULL,
    hash         BLOB NOT NULL
);
CREATE INDEX ledger_by_run ON ledger (run_id);
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: UPDATE is refused'); END;
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: DELETE is refused'); END;
-- INSERT OR REPLACE deletes the row it replaces without firing the DELETE trigger:
-- a new row must come right after the last one and bring an event_id not stored yet.
CREATE TRIGGER ledger_append_only BEFORE INSERT ON ledger
WHEN NEW.seq IS NOT (SELECT coalesce(max(seq), 0) + 1 FROM ledger)
  OR EXISTS (SELECT 1 FROM ledger WHERE event_id = NEW.event_id)
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: a row goes after the last one, with a new event_id'); END;

-- The payload of each entry; a purge deletes rows here, never in ledger.
CREATE TABLE payloads (
    seq  INTEGER PRIMARY KEY,
    body TEXT NOT NULL
);
CREATE TRIGGER payloads_no_update BEFORE UPDATE ON payloads
BEGIN SELECT RAISE(ABORT, 'payloads are write-once: UPDATE is refused'); END;

-- Where the chain starts: format-1 ledgers converted to format 2 keep their verified head here,
-- and the first entry's prev_hash is derived from it.
CREATE TABLE ledger_origin (
    v1_head_seq  INTEGER NOT NULL,
    v1_head_hash BLOB NOT NULL
);
-- The format-1 hash of every converted row, so checkpoints taken before the conversion still check.
CREATE TABLE ledger_v1 (
    seq  INTEGER PRIMARY KEY,
    hash BLOB NOT NULL
);
CREATE TRIGGER ledger_v1_no_update BEFORE UPDATE ON ledger_v1
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: UPDATE is refused'); END;
CREATE TRIGGER ledger_v1_no_delete BEFORE DELETE ON ledger_v1
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: DELETE is refused'); END;

-- Figures that outlive purges: per workflow, project, UTC day and status, the runs purged so far.
-- Live runs are counted from runs; the two together are the daily aggregates.
CREATE TABLE purged_totals (
    workflow_id TEXT NOT NULL, project TEXT NOT NULL, day TEXT NOT NULL, status TEXT NOT NULL,
    runs INTEGER NOT NULL, cost_usd REAL NOT NULL, duration_ms_sum REAL NOT NULL, durations INTEGER NOT NULL,
    duration_ms_max REAL,
    PRIMARY KEY (workflow_id, project, day, status)
) WITHOUT ROWID;
"""

_CONVERT_CHUNK: Final = 2_000

_V12_COVERAGE: Final = """
-- Coverage (flowledger coverage): each kind of missing core event is a range of a small partial index.
CREATE INDEX node_runs_running ON node_runs (run_id) WHERE status = 'running';
CREATE INDEX runs_without_start ON runs (started_at, run_id) WHERE started_event_id IS NULL;
CREATE INDEX producers_with_gaps ON producers (last_ts) WHERE max_seq >= events;
"""


def _v10_ledger_format_2(conn: sqlite3.Connection) -> None:
    """Convert a format-1 ledger (hash over the whole body) to entries and payloads apart (format 2 when this
    migration was written, the entry format of this version since: see :mod:`._entry`).

    The old chain is verified first (a ledger that does not verify is not
    converted). Every row becomes an entry with the same seq, its body the
    payload; the old head is recorded in ``ledger_origin`` and the new chain
    starts from a hash of it; the old per-row hashes are kept in ``ledger_v1``.
    """
    conn.execute("ALTER TABLE ledger RENAME TO ledger_format1")
    conn.execute("DROP TRIGGER IF EXISTS ledger_no_update")
    conn.execute("DROP TRIGGER IF EXISTS ledger_no_delete")
    conn.execute("DROP TRIGGER IF EXISTS ledger_append_only")  # version 6's, on the format-1 table
    for statement in _statements(LEDGER_V2_SCHEMA):
        conn.execute(statement)
    walker = Format1Walker()
    last = 0
    while True:
        rows = conn.execute(
            f"SELECT {FORMAT1_COLUMNS} FROM ledger_format1 WHERE seq > ? ORDER BY seq LIMIT ?",
            (last, _CONVERT_CHUNK),
        ).fetchall()
        if not rows:
            break
        last = int(rows[-1][0])
        if not walker.feed(rows):
            break
    report = walker.report()
    if not report.ok:
        raise StoreError(
            f"the ledger does not verify (row {report.first_bad_seq}, event {report.first_bad_event_id}: "
            f"{report.problem}), so it is not converted to the new format; restore it from a backup"
        )
    v1_head = bytes.fromhex(report.head_hash)
    conn.execute("INSERT INTO ledger_origin VALUES (?, ?)", (report.head_seq, v1_head))
    prev = migrated_genesis(report.head_seq, v1_head)
    last = 0
    while True:
        rows = conn.execute(
            "SELECT seq, event_id, run_id, kind, ts, received_at, body, hash FROM ledger_format1 "
            "WHERE seq > ? ORDER BY seq LIMIT ?",
            (last, _CONVERT_CHUNK),
        ).fetchall()
        if not rows:
            break
        last = int(rows[-1][0])
        ledger_rows, payload_rows, v1_rows = [], [], []
        for seq, event_id, run_id, kind, _ts, received_at, body, v1_hash in rows:
            raw = json.loads(body)
            digest = payload_hash(body.encode("utf-8"))
            ts = normalize_ts(raw["ts"])
            entry = entry_bytes(
                seq=seq,
                event_id=event_id,
                run_id=run_id,
                kind=kind,
                ts=ts,
                project=raw.get("project"),
                producer_id=raw.get("producer_id"),
                producer_seq=raw.get("producer_seq"),
                payload_sha256=digest,
            )
            new_hash = entry_hash(prev, entry)
            ledger_rows.append((seq, event_id, run_id, kind, ts, received_at, entry, digest, prev, new_hash))
            payload_rows.append((seq, body))
            v1_rows.append((seq, v1_hash))
            prev = new_hash
        conn.executemany("INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", ledger_rows)
        conn.executemany("INSERT INTO payloads VALUES (?, ?)", payload_rows)
        conn.executemany("INSERT INTO ledger_v1 VALUES (?, ?)", v1_rows)
    conn.execute("DROP TABLE ledger_format1")


def _v11_merkle_tree(conn: sqlite3.Connection) -> None:
    """The ledger as an RFC 9162 Merkle tree: store the perfect subtrees of the entries already there."""
    for statement in _statements(MERKLE_SCHEMA):
        conn.execute(statement)
    backfill(conn)


_V13_RESUME: Final = """
-- Complete outputs captured in full, keyed by the sha256 of their JSON text; the ledger commits to the hash.
CREATE TABLE blobs (
    sha256 TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    size INTEGER NOT NULL
) WITHOUT ROWID;
ALTER TABLE node_runs ADD COLUMN output_sha256 TEXT;
ALTER TABLE node_runs ADD COLUMN output_capture TEXT;
CREATE INDEX node_runs_by_output ON node_runs (output_sha256) WHERE output_sha256 IS NOT NULL;
ALTER TABLE runs ADD COLUMN resumed_from TEXT;
ALTER TABLE runs ADD COLUMN definition_sha256 TEXT;
ALTER TABLE runs ADD COLUMN resumed_from_definition_sha256 TEXT;
ALTER TABLE runs ADD COLUMN input_sha256 TEXT;
CREATE INDEX runs_by_input_blob ON runs (input_sha256) WHERE input_sha256 IS NOT NULL;
CREATE INDEX runs_by_resumed_from ON runs (resumed_from) WHERE resumed_from IS NOT NULL;
"""
_RUN_CONTEXT_COLUMNS: Final = ("user_id", "agent_id", "intent", "parent_run_id")
_RUN_CONTEXT_INDEXES: Final = tuple(
    f"CREATE INDEX runs_by_{name} ON runs ({column}, started_at DESC, run_id DESC, project, status, workflow_id) "
    f"WHERE {column} IS NOT NULL"
    for name, column in (("user", "user_id"), ("agent", "agent_id"), ("intent", "intent"), ("parent", "parent_run_id"))
)
"""GET /api/runs, the viewer and export by who ran it, which agent, why, and which run started it: one newest-first
index each, holding only the runs that have the value. Project, status and workflow ride along, so an API key's
project, a status or a workflow given too is checked in the index (and a count of matches never reads the table)."""


def _v18_run_context(conn: sqlite3.Connection) -> None:
    """The run context as columns of ``runs``, filled from the run_started each run shows, and their indexes."""
    for column in _RUN_CONTEXT_COLUMNS:
        conn.execute(f"ALTER TABLE runs ADD COLUMN {column} TEXT")
    # What the fold keeps: a string value of the run_started payload the run shows (input_seq).
    sets = ", ".join(
        f"{column} = (SELECT CASE WHEN json_type(p.body, '$.data.{column}') = 'text' "
        f"THEN p.body ->> '$.data.{column}' END FROM payloads p WHERE p.seq = runs.input_seq)"
        for column in _RUN_CONTEXT_COLUMNS
    )
    conn.execute(f"UPDATE runs SET {sets} WHERE input_seq IS NOT NULL")
    for statement in _RUN_CONTEXT_INDEXES:
        conn.execute(statement)


def _v19_error_groups_and_stats(conn: sqlite3.Connection) -> None:
    """Error groups (:mod:`._error_groups`) and statistics (:mod:`._stats`, in the layout of today: a database
    migrated here before has its rows made into it by a later migration), filled from the runs and attempts
    already stored."""
    for statement in _statements(ERROR_GROUPS_SCHEMA + STATS_SCHEMA):
        conn.execute(statement)
    backfill_rollups(conn)


_V20_COST_BREAKDOWN_AND_CUSTOM_METRICS: Final = """
-- The cost of a run or an attempt by category: canonical JSON {key: {count, usd_nanos}} (null for older events).
ALTER TABLE runs ADD COLUMN cost_breakdown TEXT;
ALTER TABLE node_runs ADD COLUMN cost_breakdown TEXT;

-- Custom metrics added up per project, workflow, node, name, labels (canonical JSON) and UTC hour; no run ids.
CREATE TABLE custom_metrics (
    project TEXT NOT NULL, workflow_id TEXT NOT NULL, node_id TEXT NOT NULL, name TEXT NOT NULL,
    labels TEXT NOT NULL, hour TEXT NOT NULL,
    count INTEGER NOT NULL, sum REAL NOT NULL, min REAL NOT NULL, max REAL NOT NULL,
    PRIMARY KEY (project, workflow_id, node_id, name, labels, hour)
) WITHOUT ROWID;
CREATE INDEX custom_metrics_by_name ON custom_metrics (name, hour);
"""


def _stats_for_all_projects_and_by_month(conn: sqlite3.Connection) -> None:
    """Statistics rows also for all projects together and per month, histograms one blob per place
    (:func:`._stats.upgrade_rollups_sync`): a query reads a few rows per group and never sums projects."""
    upgrade_rollups_sync(conn)


_ENTRY_PROJECT: Final = "ifnull(json_extract(CAST({}entry AS TEXT), '$.project'), '')"
"""An entry's hashed ``project`` read out of its bytes ('' for none): what schema versions 22 and 23 indexed,
and what the project column is filled from."""

_LEDGER_PER_PROJECT: Final = f"""
CREATE TABLE ledger (
    seq          INTEGER PRIMARY KEY,       -- position in the hash chain, from 1
    event_id     TEXT NOT NULL,             -- unique per project (ledger_event_once)
    run_id       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    ts           TEXT NOT NULL,
    received_at  TEXT NOT NULL,             -- receiver clock; not covered by the hash
    entry        BLOB NOT NULL,             -- canonical UTF-8 JSON: what the hash covers
    payload_hash BLOB NOT NULL,             -- sha256 of the payload, as in the entry
    prev_hash    BLOB NOT NULL,
    hash         BLOB NOT NULL
);
INSERT INTO ledger SELECT seq, event_id, run_id, kind, ts, received_at, entry, payload_hash, prev_hash, hash
FROM ledger_global_ids ORDER BY seq;
DROP TABLE ledger_global_ids;
CREATE UNIQUE INDEX ledger_event_once ON ledger (event_id, {_ENTRY_PROJECT.format("")});
CREATE INDEX ledger_by_run ON ledger (run_id, {_ENTRY_PROJECT.format("")});
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: UPDATE is refused'); END;
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: DELETE is refused'); END;
-- INSERT OR REPLACE deletes the row it replaces without firing the DELETE trigger:
-- a new row must come right after the last one and bring an event_id its project has not stored yet.
CREATE TRIGGER ledger_append_only BEFORE INSERT ON ledger
WHEN NEW.seq IS NOT (SELECT coalesce(max(seq), 0) + 1 FROM ledger)
  OR EXISTS (SELECT 1 FROM ledger WHERE event_id = NEW.event_id
             AND {_ENTRY_PROJECT.format("")} = {_ENTRY_PROJECT.format("NEW.")})
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: a row goes after the last one, with a new event_id'); END;
"""

_RUN_COUNTS_PER_PROJECT: Final = f"""
CREATE TRIGGER run_counts_before_insert BEFORE INSERT ON runs
BEGIN
    UPDATE run_counts SET runs = runs - 1,
        cost_usd_nanos = cost_usd_nanos - (
            SELECT {_NANOS.format("o")} FROM runs o
            WHERE o.run_id = NEW.run_id AND ifnull(o.project, '') = ifnull(NEW.project, ''))
    WHERE (workflow_id, status, trigger_type, dry_run, project) = (
        SELECT coalesce(o.workflow_id, ''), o.status, coalesce(o.trigger_type, ''), coalesce(o.dry_run, -1),
               coalesce(o.project, '')
        FROM runs o WHERE o.run_id = NEW.run_id AND ifnull(o.project, '') = ifnull(NEW.project, ''));
END;
"""

_KEYS_PER_PROJECT: Final = {
    "runs": ("CREATE UNIQUE INDEX runs_once ON runs (run_id, ifnull(project, ''))",),
    "node_runs": (
        "CREATE UNIQUE INDEX node_runs_once ON node_runs (run_id, ifnull(project, ''), span_id)",
        "CREATE INDEX node_runs_by_start ON node_runs "
        "(run_id, ifnull(project, ''), started_at, attempt, item, span_id)",
    ),
    "log_drops": ("CREATE UNIQUE INDEX log_drops_once ON log_drops (run_id, ifnull(project, ''), span_id)",),
    "run_attributes": (
        "CREATE UNIQUE INDEX run_attributes_once ON run_attributes (key, value, run_id, ifnull(project, ''))",
        "CREATE INDEX run_attributes_by_run ON run_attributes (run_id, ifnull(project, ''))",
    ),
}
"""Tables whose primary key held a run id alone: rebuilt as rowid tables keyed by these unique indexes."""
_REPLACED_OBJECTS: Final = frozenset(
    {
        "node_runs_by_start",
        "run_attributes_by_run",
        "run_counts_before_insert",
        *(sql.split()[sql.split().index("INDEX") + 1] for sqls in _KEYS_PER_PROJECT.values() for sql in sqls),
    }
)
"""Indexes and triggers :func:`_rekey` does not copy: made again per project (a database rewound by a test
may hold them already)."""


def _rekey(conn: sqlite3.Connection, table: str) -> None:
    """Rebuild ``table`` without its primary key, with a ``project`` column, keyed by :data:`_KEYS_PER_PROJECT`."""
    columns = conn.execute(f"PRAGMA table_info({table})").fetchall()
    names = [str(c[1]) for c in columns]
    ddl = [f"{c[1]} {c[2]}{' NOT NULL' if c[3] or c[5] else ''}" for c in columns]
    if "project" not in names:
        ddl.append("project TEXT")
    kept = [
        str(sql)
        for name, sql in conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE tbl_name = ? AND type IN ('index', 'trigger') "
            "AND sql IS NOT NULL ORDER BY type, name",
            (table,),
        ).fetchall()
        if name not in _REPLACED_OBJECTS
    ]
    conn.execute(f"CREATE TABLE {table}_per_project ({', '.join(ddl)})")
    conn.execute(f"INSERT INTO {table}_per_project ({', '.join(names)}) SELECT {', '.join(names)} FROM {table}")
    conn.execute(f"DROP TABLE {table}")
    conn.execute(f"ALTER TABLE {table}_per_project RENAME TO {table}")
    for sql in (*kept, *_KEYS_PER_PROJECT[table]):
        conn.execute(sql)


def _run_and_event_ids_per_project(conn: sqlite3.Connection) -> None:
    """Run ids and event ids unique per project, not across the database.

    A run is ``(project, run_id)`` and an event ``(project, event_id)`` ('' standing for no project in
    every key): the ledger's event-id index and every projection keyed by a run id get the project in
    their key. Rows made before were unique across projects, so each child row takes its run's project.
    The hashed entries do not change.
    """
    conn.execute("ALTER TABLE ledger RENAME TO ledger_global_ids")
    for trigger in ("ledger_no_update", "ledger_no_delete", "ledger_append_only"):
        conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    conn.execute("DROP INDEX IF EXISTS ledger_by_run")
    for statement in _statements(_LEDGER_PER_PROJECT):
        conn.execute(statement)
    for table in _KEYS_PER_PROJECT:
        _rekey(conn, table)
    for statement in _statements(_RUN_COUNTS_PER_PROJECT):
        conn.execute(statement)
    if "project" not in {str(c[1]) for c in conn.execute("PRAGMA table_info(search_text)")}:
        conn.execute("ALTER TABLE search_text ADD COLUMN project TEXT")
    for table in ("node_runs", "log_drops", "run_attributes", "search_text", "logs"):
        conn.execute(f"UPDATE {table} SET project = (SELECT r.project FROM runs r WHERE r.run_id = {table}.run_id)")
    conn.execute("DROP INDEX search_text_by_run")
    conn.execute("CREATE INDEX search_text_by_run ON search_text (run_id, ifnull(project, ''))")
    conn.execute("DROP INDEX logs_by_attempt")
    conn.execute("CREATE INDEX logs_by_attempt ON logs (run_id, ifnull(project, ''), span_id, id)")
    conn.execute("DROP TRIGGER logs_searchable")
    conn.execute(
        "CREATE TRIGGER logs_searchable AFTER INSERT ON logs BEGIN "
        "INSERT INTO search_text (run_id, source, text, project) VALUES (NEW.run_id, 'log:' || NEW.source, "
        "substr(NEW.message || coalesce(char(10) || NEW.exception, ''), 1, 8192), NEW.project); END"
    )


_RUN_LISTINGS_BY_PROJECT_TOO: Final = """
-- Run listings are ordered newest first, then by run id, then by project (two projects' runs of one id
-- started at the same instant are two places in the order, so a keyset cursor can stand between them):
-- each listing index that ends with the run id gets the project next.
DROP INDEX runs_by_start;
CREATE INDEX runs_by_start ON runs (started_at DESC, run_id DESC, project);
DROP INDEX runs_by_workflow;
CREATE INDEX runs_by_workflow ON runs (workflow_id, started_at DESC, run_id DESC, project);
DROP INDEX runs_by_status;
CREATE INDEX runs_by_status ON runs (status, started_at DESC, run_id DESC, project);
DROP INDEX runs_by_workflow_status;
CREATE INDEX runs_by_workflow_status ON runs (workflow_id, status, started_at DESC, run_id DESC, project);
DROP INDEX runs_facts;
CREATE INDEX runs_facts ON runs (
    started_at DESC, run_id DESC, project, status, trigger_type, dry_run, workflow_id, duration_ms, cost_usd
);
"""

_LEDGER_COLUMNS: Final = "seq, event_id, run_id, kind, ts, received_at, entry, payload_hash, prev_hash, hash"
_LEDGER_KEYS_AND_TRIGGERS: Final = """
CREATE UNIQUE INDEX ledger_event_once ON ledger (event_id, project);
CREATE INDEX ledger_by_run ON ledger (run_id, project);
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: UPDATE is refused'); END;
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: DELETE is refused'); END;
-- INSERT OR REPLACE deletes the row it replaces without firing the DELETE trigger (unless a connection turns
-- recursive_triggers on): a new row must come right after the last one and bring an event_id its project has
-- not stored yet, so neither the primary key nor ledger_event_once ever has a row to replace.
CREATE TRIGGER ledger_append_only BEFORE INSERT ON ledger
WHEN NEW.seq IS NOT (SELECT coalesce(max(seq), 0) + 1 FROM ledger)
  OR EXISTS (SELECT 1 FROM ledger WHERE event_id = NEW.event_id AND project = NEW.project)
BEGIN SELECT RAISE(ABORT, 'the ledger is append-only: a row goes after the last one, with a new event_id'); END;
"""
"""The ledger's indexes and append-only triggers over its ``project`` column (made again after each rebuild)."""

_LEDGER_PROJECT_AS_COLUMN: Final = f"""
-- The entry's project as a column ('' for none), written by the store beside the entry and checked by verify
-- against the hashed entry like every other column: the event-id and per-run indexes and the append-only check
-- compare it instead of parsing every entry's JSON. The entries and their hashes do not change.
CREATE TABLE ledger_with_project (
    seq          INTEGER PRIMARY KEY,       -- position in the hash chain, from 1
    event_id     TEXT NOT NULL,             -- unique per project (ledger_event_once)
    project      TEXT NOT NULL,             -- the entry's project, '' for none
    run_id       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    ts           TEXT NOT NULL,
    received_at  TEXT NOT NULL,             -- receiver clock; not covered by the hash
    entry        BLOB NOT NULL,             -- canonical UTF-8 JSON: what the hash covers
    payload_hash BLOB NOT NULL,             -- sha256 of the payload, as in the entry
    prev_hash    BLOB NOT NULL,
    hash         BLOB NOT NULL
);
INSERT INTO ledger_with_project ({_LEDGER_COLUMNS}, project)
SELECT {_LEDGER_COLUMNS}, {_ENTRY_PROJECT.format("")} FROM ledger ORDER BY seq;
DROP TABLE ledger;
ALTER TABLE ledger_with_project RENAME TO ledger;
{_LEDGER_KEYS_AND_TRIGGERS}"""

_LEDGER_ENTRY_AS_COLUMNS: Final = f"""
-- A new entry is kept as its fields: producer_id and producer_seq get columns beside the others, and the
-- entry's bytes, rebuilt from them when read (._entry.entry_of), are no longer stored: the hash and the Merkle
-- leaf cover the same bytes as before. Rows stored before keep their entry in the entry column, which is read
-- instead when it is set, and their producer columns stay NULL. No entry and no hash changes.
CREATE TABLE ledger_entry_as_columns (
    seq          INTEGER PRIMARY KEY,       -- position in the hash chain, from 1
    event_id     TEXT NOT NULL,             -- unique per project (ledger_event_once)
    project      TEXT NOT NULL,             -- the entry's project, '' for none
    run_id       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    ts           TEXT NOT NULL,
    producer_id  TEXT,                      -- NULL for a purge entry, or a row that stores its entry
    producer_seq INTEGER,
    received_at  TEXT NOT NULL,             -- receiver clock; not covered by the hash
    entry        BLOB,                      -- NULL: the columns are the entry; else the bytes hashed
    payload_hash BLOB NOT NULL,             -- sha256 of the payload, as in the entry
    prev_hash    BLOB NOT NULL,
    hash         BLOB NOT NULL
);
INSERT INTO ledger_entry_as_columns ({_LEDGER_COLUMNS}, project)
SELECT {_LEDGER_COLUMNS}, project FROM ledger ORDER BY seq;
DROP TABLE ledger;
ALTER TABLE ledger_entry_as_columns RENAME TO ledger;
{_LEDGER_KEYS_AND_TRIGGERS}"""


def _percentiles_stored_beside_histograms(conn: sqlite3.Connection) -> None:
    """Each statistics histogram keeps the fields of its p50 and p95 beside it, filled here for those stored
    (:func:`._stats.store_percentiles_sync`): a series point of one whole bucket is read without its histogram."""
    store_percentiles_sync(conn)


def _statistics_totals_per_place(conn: sqlite3.Connection) -> None:
    """Each statistics place's figures with its statuses added up, kept in ``stats_total`` as its rows change and
    filled here from the rows stored (:func:`._stats.keep_totals_sync`): a series point of one whole bucket is one
    row, read with no ``GROUP BY``."""
    keep_totals_sync(conn)


def _ledger_format_3(conn: sqlite3.Connection) -> None:
    """Ledger format 3 (:mod:`._entry`): new entries hash as ``SHA-256(0x00 || prev_hash || entry)``, their own
    Merkle leaf, and a row keeping one as its fields holds 3 in its ``entry`` column (NULL is format 2's). No row
    changes: what was written stays format 2 and verifies as before. The version tells a flowledger before format 3,
    which would read that 3 as an entry's bytes, to refuse the file."""


_WHOLE_USD: Final = "coalesce(CAST({}.cost_usd AS INTEGER), 0)"
_REST_NANOS: Final = "coalesce(CAST(round(({0}.cost_usd - CAST({0}.cost_usd AS INTEGER)) * 1e9) AS INTEGER), 0)"
_COUNT_KEY_OLD: Final = (
    "coalesce(OLD.workflow_id, ''), OLD.status, coalesce(OLD.trigger_type, ''), coalesce(OLD.dry_run, -1), "
    "coalesce(OLD.project, '')"
)
_RUN_COUNTS_COST_UNCAPPED: Final = f"""
-- A run's cost in nano-dollars passes 2**63 from 9.2 billion USD on (the wire takes up to 2**53 USD): as one
-- integer it was cut to 2**63 - 1. run_counts keeps each group's cost as its runs' whole dollars and their
-- nano-dollars below them instead, both integers: exact while the dollars fit 2**63 (a thousand runs of 2**53
-- USD), the nearest float past it (SQLite's own +), never cut. Made again from the runs.
DROP TRIGGER IF EXISTS run_counts_before_insert;
DROP TRIGGER IF EXISTS run_counts_after_insert;
DROP TRIGGER IF EXISTS run_counts_after_update;
DROP TRIGGER IF EXISTS run_counts_after_delete;
DROP TABLE run_counts;
CREATE TABLE run_counts (
    workflow_id TEXT NOT NULL, status TEXT NOT NULL, trigger_type TEXT NOT NULL, dry_run INTEGER NOT NULL,
    project TEXT NOT NULL, runs INTEGER NOT NULL,
    cost_usd_whole INTEGER NOT NULL,            -- whole dollars of the runs
    cost_usd_rest_nanos INTEGER NOT NULL,       -- their nano-dollars below the whole dollars
    PRIMARY KEY (workflow_id, status, trigger_type, dry_run, project)
) WITHOUT ROWID;
-- The dollars summed in billions and the rest, which cannot overflow, then put together with * and +.
INSERT INTO run_counts
SELECT coalesce(workflow_id, ''), status, coalesce(trigger_type, ''), coalesce(dry_run, -1), coalesce(project, ''),
       count(*),
       sum({_WHOLE_USD.format("runs")} / 1000000000) * 1000000000 + sum({_WHOLE_USD.format("runs")} % 1000000000),
       sum({_REST_NANOS.format("runs")})
FROM runs GROUP BY 1, 2, 3, 4, 5;
-- INSERT OR REPLACE (the projector's save) fires no DELETE trigger (recursive_triggers is off): the row it
-- replaces is taken out of the counts before the insert, and the new one added after it.
CREATE TRIGGER run_counts_before_insert BEFORE INSERT ON runs
BEGIN
    UPDATE run_counts SET runs = runs - 1,
        cost_usd_whole = cost_usd_whole - (
            SELECT {_WHOLE_USD.format("o")} FROM runs o
            WHERE o.run_id = NEW.run_id AND ifnull(o.project, '') = ifnull(NEW.project, '')),
        cost_usd_rest_nanos = cost_usd_rest_nanos - (
            SELECT {_REST_NANOS.format("o")} FROM runs o
            WHERE o.run_id = NEW.run_id AND ifnull(o.project, '') = ifnull(NEW.project, ''))
    WHERE (workflow_id, status, trigger_type, dry_run, project) = (
        SELECT coalesce(o.workflow_id, ''), o.status, coalesce(o.trigger_type, ''), coalesce(o.dry_run, -1),
               coalesce(o.project, '')
        FROM runs o WHERE o.run_id = NEW.run_id AND ifnull(o.project, '') = ifnull(NEW.project, ''));
END;
CREATE TRIGGER run_counts_after_insert AFTER INSERT ON runs
BEGIN
    INSERT INTO run_counts VALUES ({_COUNT_KEY_NEW}, 1, {_WHOLE_USD.format("NEW")}, {_REST_NANOS.format("NEW")})
    ON CONFLICT (workflow_id, status, trigger_type, dry_run, project)
    DO UPDATE SET runs = runs + 1, cost_usd_whole = cost_usd_whole + excluded.cost_usd_whole,
        cost_usd_rest_nanos = cost_usd_rest_nanos + excluded.cost_usd_rest_nanos;
END;
CREATE TRIGGER run_counts_after_update AFTER UPDATE OF workflow_id, status, trigger_type, dry_run, project, cost_usd
ON runs
BEGIN
    UPDATE run_counts SET runs = runs - 1, cost_usd_whole = cost_usd_whole - {_WHOLE_USD.format("OLD")},
        cost_usd_rest_nanos = cost_usd_rest_nanos - {_REST_NANOS.format("OLD")}
    WHERE (workflow_id, status, trigger_type, dry_run, project) = ({_COUNT_KEY_OLD});
    INSERT INTO run_counts VALUES ({_COUNT_KEY_NEW}, 1, {_WHOLE_USD.format("NEW")}, {_REST_NANOS.format("NEW")})
    ON CONFLICT (workflow_id, status, trigger_type, dry_run, project)
    DO UPDATE SET runs = runs + 1, cost_usd_whole = cost_usd_whole + excluded.cost_usd_whole,
        cost_usd_rest_nanos = cost_usd_rest_nanos + excluded.cost_usd_rest_nanos;
END;
CREATE TRIGGER run_counts_after_delete AFTER DELETE ON runs
BEGIN
    UPDATE run_counts SET runs = runs - 1, cost_usd_whole = cost_usd_whole - {_WHOLE_USD.format("OLD")},
        cost_usd_rest_nanos = cost_usd_rest_nanos - {_REST_NANOS.format("OLD")}
    WHERE (workflow_id, status, trigger_type, dry_run, project) = ({_COUNT_KEY_OLD});
END;
"""

_PRODUCERS_PER_PROJECT: Final = """
-- A producer is its project's, as a run is (see store._namespace): keyed by its id and its project's namespace
-- ('' for none), the same producer id sent in two projects is two producers, and one project's events and
-- sequence gaps never count in the other's figures or coverage. Every row keeps its project (the one that sent
-- its id first): what other projects added to it cannot be told apart here; a rebuild refolds it from the ledger.
CREATE TABLE producers_per_project (
    producer_id TEXT NOT NULL,
    max_seq INTEGER NOT NULL,
    events INTEGER NOT NULL,
    project TEXT,
    last_ts TEXT,
    last_run_id TEXT
);
INSERT INTO producers_per_project (producer_id, max_seq, events, project, last_ts, last_run_id)
SELECT producer_id, max_seq, events, project, last_ts, last_run_id FROM producers;
DROP TABLE producers;
ALTER TABLE producers_per_project RENAME TO producers;
CREATE UNIQUE INDEX producers_once ON producers (producer_id, ifnull(project, ''));
CREATE INDEX producers_by_last_ts ON producers (last_ts);
CREATE INDEX producers_by_project ON producers (project);
CREATE INDEX producers_with_gaps ON producers (last_ts) WHERE max_seq >= events;
"""


def _otlp_integer_values(conn: sqlite3.Connection) -> None:
    """A gauge or sum point sent as asInt keeps its integer in ``int_value``, exact over the whole int64 range
    (``value`` NULL); ``value`` keeps an asDouble. Points stored before keep their integers in ``value``, as
    doubles. (Added only when missing: a database whose version was set back still has it.)"""
    columns = {str(row[1]) for row in conn.execute("PRAGMA table_info(otlp_metric_points)")}
    if "int_value" not in columns:
        conn.execute("ALTER TABLE otlp_metric_points ADD COLUMN int_value INTEGER")


Migration = str | Callable[[sqlite3.Connection], None]
"""A migration: an SQL script, or a function given the connection inside the migration's transaction."""

MIGRATIONS: Final[tuple[Migration, ...]] = (
    _V1,
    _V2_SPANS,
    _V3_VIEWER,
    _V4_QUERY,
    _V5_RUN_COUNTS,
    _V6_APPEND_ONLY,
    _V7_FINISH_CONFLICTS,
    _V8_SPANS_PER_PROJECT,
    _V9_PRODUCER_TAILS,
    _v10_ledger_format_2,
    _v11_merkle_tree,
    _V12_COVERAGE,
    _V13_RESUME,
    LOGS_SCHEMA,
    SEARCH_SCHEMA,
    SAMPLED_OUT_SCHEMA,
    METRICS_SCHEMA + OTLP_LOGS_SCHEMA,
    _v18_run_context,
    _v19_error_groups_and_stats,
    _V20_COST_BREAKDOWN_AND_CUSTOM_METRICS,
    _stats_for_all_projects_and_by_month,
    _run_and_event_ids_per_project,
    SEARCH_INDEX_BY_STATEMENT,
    _RUN_LISTINGS_BY_PROJECT_TOO,
    _LEDGER_PROJECT_AS_COLUMN,
    _percentiles_stored_beside_histograms,
    _statistics_totals_per_place,
    _LEDGER_ENTRY_AS_COLUMNS,
    _ledger_format_3,
    _RUN_COUNTS_COST_UNCAPPED,
    _PRODUCERS_PER_PROJECT,
    _otlp_integer_values,
)
"""Migration ``i`` brings the schema from version ``i`` to ``i + 1``."""
SCHEMA_VERSION: Final = len(MIGRATIONS)


def schema_version(conn: sqlite3.Connection) -> int:
    """The number of migrations applied to the database."""
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


_SHOWN_TABLES: Final = 3


def foreign_database(conn: sqlite3.Connection, name: str = "this file") -> str | None:
    """Why the database is not flowledger's and not empty (one sentence naming ``name``), or None when it is usable.

    A flowledger database carries :data:`APPLICATION_ID` from its first migration on (or, made
    without it, flowledger's ledger table and a schema version it knows); an empty one has no
    application id, no schema version and no tables. Anything else belongs to another
    application and is left untouched.
    """
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    if app_id == APPLICATION_ID:
        return None
    tables = [
        str(row[0])
        for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
        ).fetchall()
    ]
    version = schema_version(conn)
    if app_id == 0 and version == 0 and not tables:
        return None
    if app_id == 0 and 0 < version <= SCHEMA_VERSION and "ledger" in tables:
        return None  # flowledger's tables and schema version without the id (made by hand, or by a test)
    held = ""
    if tables:
        shown = ", ".join(tables[:_SHOWN_TABLES]) + (
            f" and {len(tables) - _SHOWN_TABLES} more" if len(tables) > _SHOWN_TABLES else ""
        )
        held = f" (it holds {shown})"
    return (
        f"{name} is an SQLite database of another application{held}, not a flowledger database; "
        "flowledger leaves it untouched: pass --db with a new file or a flowledger database"
    )


def migrate(conn: sqlite3.Connection, *, name: str = "this file") -> int:
    """Bring the schema up to date; return how many migrations ran.

    A database of another application (see :func:`foreign_database`) is refused with StoreError
    before anything is written to it.
    """
    current = schema_version(conn)
    foreign = foreign_database(conn, name)
    if foreign is not None:
        raise StoreError(foreign)
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
            foreign = foreign_database(conn, name)  # checked again under the lock
            if foreign is not None:
                conn.execute("ROLLBACK")
                raise StoreError(foreign)
            step = MIGRATIONS[version]
            if isinstance(step, str):
                for statement in _statements(step):
                    conn.execute(statement)
            else:
                step(conn)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {version + 1}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"migrating the database to schema version {version + 1} failed: {exc}") from exc
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
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
