"""The PostgreSQL engine's schema and its migrations: versioned, refusing a newer one.

The tables are those of the SQLite engine's ledger format 2 (entries chained
by ``hash = sha256(prev_hash || entry)``, payloads apart, the Merkle tree's
perfect subtrees) and of its run and node-attempt projections, whose columns
come from the fold's state declarations (:data:`~.._fold.RUN_COLUMNS`,
:data:`~.._fold.NODE_COLUMNS`), so a field added to the fold is a column here
too. Text columns compare byte-wise (``COLLATE "C"``), as SQLite does, so
both engines list runs in the same order. Triggers refuse UPDATE and DELETE
on the ledger and its tree, as SQLite's do.

Migrations are numbered for this engine alone; ``flowledger_schema`` holds
the version, and a database newer than this flowledger is refused untouched.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Final

from flowledger._exceptions import SchemaVersionError, StoreError
from flowledger.receiver.store._fold import NodeState, RunState
from flowledger.receiver.store._sampled import SAMPLED_OUT_SCHEMA
from flowledger.receiver.store.postgres._coverage import COVERAGE_PG_INDEXES
from flowledger.receiver.store.postgres._custom_metrics import CUSTOM_METRICS_PG_SCHEMA
from flowledger.receiver.store.postgres._dialect import table_ddl
from flowledger.receiver.store.postgres._error_groups import ERROR_GROUPS_PG_SCHEMA
from flowledger.receiver.store.postgres._logs import LOGS_PG_SCHEMA
from flowledger.receiver.store.postgres._namespace import PG_SPACE
from flowledger.receiver.store.postgres._otlp_logs import OTLP_LOGS_PG_SCHEMA
from flowledger.receiver.store.postgres._otlp_metrics import METRICS_PG_SCHEMA
from flowledger.receiver.store.postgres._purge import PURGED_TOTALS_PG_SCHEMA
from flowledger.receiver.store.postgres._search import SEARCH_PG_SCHEMA
from flowledger.receiver.store.postgres._spans import SPANS_PG_SCHEMA
from flowledger.receiver.store.postgres._stats import STATS_PG_SCHEMA
from flowledger.receiver.store.postgres._verify import LEDGER_V1_PG_SCHEMA

if TYPE_CHECKING:
    import asyncpg

__all__ = ["PG_SCHEMA_VERSION", "column_type", "migrate_postgres"]

TEXT: Final = 'text COLLATE "C"'


def column_type(annotation: object) -> str:
    """The PostgreSQL type of a fold state field, from its annotation (``int | None`` is ``bigint``...)."""
    text = str(annotation)
    if "bool" in text:
        return "boolean"
    if "float" in text:
        return "double precision"
    if "int" in text:
        return "bigint"
    return TEXT


def _table(name: str, state: type, key: tuple[str, ...]) -> str:
    columns = [
        f"{f.name} {column_type(f.type)}{' NOT NULL' if f.name in key else ''}"
        for f in dataclasses.fields(state)
        if f.name != "seen"
    ]
    return f"CREATE TABLE {name} ({', '.join(columns)}, PRIMARY KEY ({', '.join(key)}))"


_REFUSE: Final = """
CREATE FUNCTION flowledger_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '%', TG_ARGV[0]; END $$;
-- Checked once per statement (a commit group is one statement): the rows added are contiguous and end
-- the ledger, right after the rows before them.
CREATE FUNCTION flowledger_ledger_appended() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE lo bigint; hi bigint; n bigint;
BEGIN
  SELECT min(seq), max(seq), count(*) INTO lo, hi, n FROM added;
  IF n > 0 AND (hi - lo + 1 <> n OR (SELECT max(seq) FROM ledger) <> hi
                OR (lo > 1 AND NOT EXISTS (SELECT 1 FROM ledger WHERE seq = lo - 1))) THEN
    RAISE EXCEPTION 'the ledger is append-only: rows go right after the last one (seq % to %)', lo, hi;
  END IF;
  RETURN NULL;
END $$;
"""

_V1_LEDGER: Final = f"""
CREATE TABLE ledger (
    seq          bigint PRIMARY KEY,
    event_id     {TEXT} NOT NULL UNIQUE,
    run_id       {TEXT} NOT NULL,
    kind         {TEXT} NOT NULL,
    ts           {TEXT} NOT NULL,
    received_at  {TEXT} NOT NULL,
    entry        bytea NOT NULL,
    payload_hash bytea NOT NULL,
    prev_hash    bytea NOT NULL,
    hash         bytea NOT NULL
);
CREATE INDEX ledger_by_run ON ledger (run_id);
CREATE TRIGGER ledger_no_update BEFORE UPDATE ON ledger FOR EACH ROW
EXECUTE FUNCTION flowledger_refuse('the ledger is append-only: UPDATE is refused');
CREATE TRIGGER ledger_no_delete BEFORE DELETE ON ledger FOR EACH ROW
EXECUTE FUNCTION flowledger_refuse('the ledger is append-only: DELETE is refused');
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON ledger FOR EACH STATEMENT
EXECUTE FUNCTION flowledger_refuse('the ledger is append-only: TRUNCATE is refused');
CREATE TRIGGER ledger_append_only AFTER INSERT ON ledger REFERENCING NEW TABLE AS added
FOR EACH STATEMENT EXECUTE FUNCTION flowledger_ledger_appended();
CREATE TABLE payloads (seq bigint PRIMARY KEY, body text NOT NULL);
CREATE TRIGGER payloads_no_update BEFORE UPDATE ON payloads FOR EACH ROW
EXECUTE FUNCTION flowledger_refuse('payloads are write-once: UPDATE is refused');
CREATE TABLE ledger_origin (v1_head_seq bigint NOT NULL, v1_head_hash bytea NOT NULL);
CREATE TABLE merkle_nodes (level integer NOT NULL, idx bigint NOT NULL, hash bytea NOT NULL, PRIMARY KEY (level, idx));
CREATE TRIGGER merkle_nodes_no_update BEFORE UPDATE ON merkle_nodes FOR EACH ROW
EXECUTE FUNCTION flowledger_refuse('the Merkle tree is append-only: UPDATE is refused');
CREATE TRIGGER merkle_nodes_no_delete BEFORE DELETE ON merkle_nodes FOR EACH ROW
EXECUTE FUNCTION flowledger_refuse('the Merkle tree is append-only: DELETE is refused');
CREATE TRIGGER merkle_nodes_no_truncate BEFORE TRUNCATE ON merkle_nodes FOR EACH STATEMENT
EXECUTE FUNCTION flowledger_refuse('the Merkle tree is append-only: TRUNCATE is refused');
CREATE TABLE blobs (sha256 {TEXT} PRIMARY KEY, body text NOT NULL, size bigint NOT NULL);
CREATE TABLE producers (
    producer_id {TEXT} PRIMARY KEY, max_seq bigint NOT NULL, events bigint NOT NULL,
    project {TEXT}, last_ts {TEXT}, last_run_id {TEXT}
);
CREATE INDEX producers_by_last_ts ON producers (last_ts);
"""

_V1_PROJECTIONS: Final = f"""
{_table("runs", RunState, ("run_id",))};
CREATE INDEX runs_by_start ON runs (started_at DESC NULLS LAST, run_id DESC);
CREATE INDEX runs_by_workflow ON runs (workflow_id, started_at DESC NULLS LAST, run_id DESC);
CREATE INDEX runs_by_status ON runs (status, started_at DESC NULLS LAST, run_id DESC);
CREATE INDEX runs_by_project ON runs (project, started_at DESC NULLS LAST, run_id DESC);
CREATE INDEX runs_by_parent ON runs (parent_run_id, started_at DESC NULLS LAST, run_id DESC);
CREATE INDEX runs_alive ON runs (last_seen_at) WHERE status = 'running';
{_table("node_runs", NodeState, ("run_id", "span_id"))};
CREATE INDEX node_runs_by_start ON node_runs (run_id, started_at, attempt, item, span_id);
"""


_NODE_RUNS_PROJECT: Final = f"""
-- An attempt carries its run's project (NodeState.project; a database made since has it from the first script).
ALTER TABLE node_runs ADD COLUMN IF NOT EXISTS project {TEXT};
UPDATE node_runs n SET project = r.project FROM runs r WHERE r.run_id = n.run_id;
"""

_IDS_PER_PROJECT: Final = f"""
-- Run and event ids are unique per project (see store._namespace). An entry's namespace is its hashed
-- project, read from the entry itself: no column can be edited apart from what the hash covers.
CREATE FUNCTION flowledger_entry_project(entry bytea) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT coalesce(convert_from(entry, 'UTF8')::jsonb ->> 'project', '') $$;
ALTER TABLE ledger DROP CONSTRAINT ledger_event_id_key;
CREATE UNIQUE INDEX ledger_event_once ON ledger (event_id, flowledger_entry_project(entry));
DROP INDEX ledger_by_run;
CREATE INDEX ledger_by_run ON ledger (run_id, flowledger_entry_project(entry));
ALTER TABLE runs DROP CONSTRAINT runs_pkey;
CREATE UNIQUE INDEX runs_once ON runs (run_id, {PG_SPACE.format("")});
ALTER TABLE node_runs DROP CONSTRAINT node_runs_pkey;
CREATE UNIQUE INDEX node_runs_once ON node_runs (run_id, {PG_SPACE.format("")}, span_id);
DROP INDEX node_runs_by_start;
CREATE INDEX node_runs_by_start ON node_runs (run_id, {PG_SPACE.format("")}, started_at, attempt, item, span_id);
DROP INDEX logs_by_attempt;
UPDATE logs l SET project = r.project FROM runs r WHERE r.run_id = l.run_id AND l.project IS NULL;
CREATE INDEX logs_by_attempt ON logs (run_id, {PG_SPACE.format("")}, span_id, id);
ALTER TABLE log_drops ADD COLUMN project {TEXT};
UPDATE log_drops d SET project = r.project FROM runs r WHERE r.run_id = d.run_id;
ALTER TABLE log_drops DROP CONSTRAINT log_drops_pkey;
CREATE UNIQUE INDEX log_drops_once ON log_drops (run_id, {PG_SPACE.format("")}, span_id);
"""

MIGRATIONS: Final[tuple[str, ...]] = (
    _REFUSE + _V1_LEDGER + _V1_PROJECTIONS,
    LOGS_PG_SCHEMA,
    SPANS_PG_SCHEMA,
    table_ddl(SAMPLED_OUT_SCHEMA),
    PURGED_TOTALS_PG_SCHEMA,
    OTLP_LOGS_PG_SCHEMA,
    METRICS_PG_SCHEMA,
    COVERAGE_PG_INDEXES,
    _NODE_RUNS_PROJECT,
    _IDS_PER_PROJECT,
    ERROR_GROUPS_PG_SCHEMA + STATS_PG_SCHEMA,
    CUSTOM_METRICS_PG_SCHEMA,
    SEARCH_PG_SCHEMA,
    LEDGER_V1_PG_SCHEMA,
)
"""Each script brings the schema one version up; append new ones at the end."""

PG_SCHEMA_VERSION: Final = len(MIGRATIONS)
_LOCK_KEY: Final = 0x666C6F776C6D6967  # "flowlmig": one migrating receiver at a time


async def migrate_postgres(conn: asyncpg.Connection, *, name: str) -> int:
    """Bring the schema up to :data:`PG_SCHEMA_VERSION` (under an advisory lock); return the version found.

    SchemaVersionError when the database is newer than this flowledger; StoreError when it holds
    tables of another application.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        has_version = await conn.fetchval("SELECT to_regclass('flowledger_schema') IS NOT NULL")
        if has_version:
            current = int(await conn.fetchval("SELECT version FROM flowledger_schema"))
        else:
            if await conn.fetchval("SELECT to_regclass('ledger') IS NOT NULL OR to_regclass('runs') IS NOT NULL"):
                raise StoreError(
                    f"{name} already has a ledger or runs table that flowledger did not make; "
                    "give flowledger a database of its own"
                )
            await conn.execute("CREATE TABLE flowledger_schema (version integer NOT NULL)")
            await conn.execute("INSERT INTO flowledger_schema VALUES (0)")
            current = 0
        if current > PG_SCHEMA_VERSION:
            raise SchemaVersionError(
                f"the database has schema version {current}, newer than the {PG_SCHEMA_VERSION} this flowledger "
                "knows; upgrade flowledger to open it"
            )
        for version in range(current, PG_SCHEMA_VERSION):
            await conn.execute(MIGRATIONS[version])
            await conn.execute("UPDATE flowledger_schema SET version = $1", version + 1)
    return current
