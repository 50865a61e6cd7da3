"""The PostgreSQL engine's schema, one version at a time, as frozen SQL text.

Each version's script is written out literally and never edited once
released, as the SQLite engine's migrations are: what "version N" creates
must not change when a fold field, a record declaration or a column list
changes later. A new column, table or index is a new script appended at the
end of :data:`PG_MIGRATIONS`. A test checks that after every script each field
the fold and the record declarations name has its column, so a field added
without a migration fails it, naming the field.

Version 1 creates ``node_runs`` without ``project``: version 9 adds it (``IF
NOT EXISTS``: databases made while version 1 was built from the fold's
fields have it from version 1).
"""

from __future__ import annotations

from typing import Final

__all__ = ["PG_MIGRATIONS"]

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
"""The functions the ledger's triggers call: refuse a statement, check that appended rows follow the last one."""

_LEDGER: Final = """
CREATE TABLE ledger (
    seq          bigint PRIMARY KEY,
    event_id     text COLLATE "C" NOT NULL UNIQUE,
    run_id       text COLLATE "C" NOT NULL,
    kind         text COLLATE "C" NOT NULL,
    ts           text COLLATE "C" NOT NULL,
    received_at  text COLLATE "C" NOT NULL,
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
CREATE TABLE merkle_nodes (
    level integer NOT NULL, idx bigint NOT NULL, hash bytea NOT NULL,
    PRIMARY KEY (level, idx)
);
CREATE TRIGGER merkle_nodes_no_update BEFORE UPDATE ON merkle_nodes FOR EACH ROW
EXECUTE FUNCTION flowledger_refuse('the Merkle tree is append-only: UPDATE is refused');
CREATE TRIGGER merkle_nodes_no_delete BEFORE DELETE ON merkle_nodes FOR EACH ROW
EXECUTE FUNCTION flowledger_refuse('the Merkle tree is append-only: DELETE is refused');
CREATE TRIGGER merkle_nodes_no_truncate BEFORE TRUNCATE ON merkle_nodes FOR EACH STATEMENT
EXECUTE FUNCTION flowledger_refuse('the Merkle tree is append-only: TRUNCATE is refused');
CREATE TABLE blobs (sha256 text COLLATE "C" PRIMARY KEY, body text NOT NULL, size bigint NOT NULL);
CREATE TABLE producers (
    producer_id text COLLATE "C" PRIMARY KEY, max_seq bigint NOT NULL, events bigint NOT NULL,
    project text COLLATE "C", last_ts text COLLATE "C", last_run_id text COLLATE "C"
);
CREATE INDEX producers_by_last_ts ON producers (last_ts);
"""
"""The ledger of format 2, payloads apart, the chain's origin, the Merkle tree's stored nodes, blobs, producers."""

_RUNS_AND_ATTEMPTS: Final = """
CREATE TABLE runs (
    run_id text COLLATE "C" NOT NULL, project text COLLATE "C", workflow_id text COLLATE "C",
    workflow_name text COLLATE "C", workflow_version text COLLATE "C", status text COLLATE "C",
    trigger_type text COLLATE "C", dry_run boolean, started_at text COLLATE "C", completed_at text COLLATE "C",
    duration_ms double precision, error_type text COLLATE "C", error_message text COLLATE "C",
    error_node_id text COLLATE "C", cost_tokens bigint, cost_tool_calls bigint, cost_external_requests bigint,
    cost_usd double precision, cost_key text COLLATE "C", input_seq bigint, output_seq bigint,
    trace_id text COLLATE "C", heartbeat_interval_s double precision, last_seen_at text COLLATE "C",
    stuck_reason text COLLATE "C", started_event_id text COLLATE "C", finished_event_id text COLLATE "C",
    finish_conflicts text COLLATE "C", resumed_from text COLLATE "C", definition_sha256 text COLLATE "C",
    resumed_from_definition_sha256 text COLLATE "C", input_sha256 text COLLATE "C", user_id text COLLATE "C",
    agent_id text COLLATE "C", intent text COLLATE "C", parent_run_id text COLLATE "C",
    cost_breakdown text COLLATE "C",
    PRIMARY KEY (run_id)
);
CREATE INDEX runs_by_start ON runs (started_at DESC NULLS LAST, run_id DESC);
CREATE INDEX runs_by_workflow ON runs (workflow_id, started_at DESC NULLS LAST, run_id DESC);
CREATE INDEX runs_by_status ON runs (status, started_at DESC NULLS LAST, run_id DESC);
CREATE INDEX runs_by_project ON runs (project, started_at DESC NULLS LAST, run_id DESC);
CREATE INDEX runs_by_parent ON runs (parent_run_id, started_at DESC NULLS LAST, run_id DESC);
CREATE INDEX runs_alive ON runs (last_seen_at) WHERE status = 'running';
CREATE TABLE node_runs (
    run_id text COLLATE "C" NOT NULL, span_id text COLLATE "C" NOT NULL, node_id text COLLATE "C",
    attempt bigint, item bigint, status text COLLATE "C", skip_reason text COLLATE "C",
    started_at text COLLATE "C", completed_at text COLLATE "C", duration_ms double precision,
    error_type text COLLATE "C", error_message text COLLATE "C", effect boolean,
    idempotency_key text COLLATE "C", simulated boolean, duplicate boolean, location text COLLATE "C",
    parent_span_id text COLLATE "C", cost_tokens bigint, cost_tool_calls bigint, cost_external_requests bigint,
    cost_usd double precision, input_key text COLLATE "C", input_seq bigint, output_seq bigint,
    started_event_id text COLLATE "C", finished_event_id text COLLATE "C", output_sha256 text COLLATE "C",
    output_capture text COLLATE "C", cost_breakdown text COLLATE "C",
    PRIMARY KEY (run_id, span_id)
);
CREATE INDEX node_runs_by_start ON node_runs (run_id, started_at, attempt, item, span_id);
"""
"""The run and node-attempt projections, as the fold's states were when this version was written."""

_LOG_LINES: Final = """
CREATE TABLE logs (
    id bigserial PRIMARY KEY, run_id text COLLATE "C" NOT NULL, span_id text COLLATE "C", ts text NOT NULL,
    level integer NOT NULL, level_name text NOT NULL, logger text, message text NOT NULL, exception text,
    trace_id text, log_span_id text, repeats integer NOT NULL DEFAULT 1, source text NOT NULL, attributes text,
    project text, event_id text
);
CREATE INDEX logs_by_attempt ON logs (run_id, span_id, id);
CREATE TABLE log_drops (
    run_id text COLLATE "C" NOT NULL, span_id text COLLATE "C" NOT NULL, lines bigint NOT NULL,
    bytes bigint NOT NULL,
    PRIMARY KEY (run_id, span_id)
);
"""
"""Log lines and their drop counts."""

_OTLP_SPANS: Final = """
CREATE TABLE spans (
    trace_id text, span_id text, parent_span_id text, name text, kind integer, start_ns bigint, end_ns bigint,
    status_code integer, status_message text, service_name text, scope_name text, scope_version text,
    attributes text, resource text, events text, links text, project text,
    received_at text
);
CREATE UNIQUE INDEX spans_once ON spans (trace_id, span_id, coalesce(project, ''));
CREATE INDEX spans_by_start ON spans (start_ns);
"""
"""OTLP spans."""

_SAMPLED_OUT: Final = """
-- Runs dropped by sampling (run_sampled_out events), per workflow, project ('' for none) and UTC day.
CREATE TABLE sampled_out (
    workflow_id TEXT NOT NULL,
    project     TEXT NOT NULL,
    day         TEXT NOT NULL,
    runs        INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, project, day)
);
"""
"""Runs dropped by sampling, per workflow, project and day."""

_PURGED_TOTALS: Final = """
-- Figures that outlive purges: per workflow, project, UTC day and status, the runs purged so far.
CREATE TABLE purged_totals (
    workflow_id text COLLATE "C" NOT NULL, project text COLLATE "C" NOT NULL, day text COLLATE "C" NOT NULL,
    status text COLLATE "C" NOT NULL, runs bigint NOT NULL, cost_usd double precision NOT NULL,
    duration_ms_sum double precision NOT NULL, durations bigint NOT NULL, duration_ms_max double precision,
    PRIMARY KEY (workflow_id, project, day, status)
);
"""
"""The daily totals of purged runs."""

_OTLP_LOG_RECORDS: Final = """
CREATE TABLE otlp_logs (
    log_id bigserial PRIMARY KEY,
    record_key text, project text, trace_id text, span_id text, time_ns bigint, observed_ns bigint,
    severity_number integer, severity_text text, body text, attributes text, event_name text, service_name text,
    resource text, scope_name text, scope_version text, received_at text,
    linked boolean NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX otlp_logs_once ON otlp_logs (record_key);
CREATE INDEX otlp_logs_by_span ON otlp_logs (trace_id, span_id) WHERE trace_id IS NOT NULL;
CREATE INDEX otlp_logs_pending ON otlp_logs (received_at) WHERE NOT linked AND trace_id IS NOT NULL;
"""
"""OTLP log records."""

_OTLP_METRICS: Final = """
CREATE TABLE otlp_metric_series (
    series_id bigserial PRIMARY KEY,
    series_key text NOT NULL UNIQUE,
    project text, name text, type text, unit text, description text, temporality integer, monotonic boolean,
    service_name text, resource text, scope_name text, scope_version text, attributes text
);
CREATE INDEX otlp_metric_series_by_name ON otlp_metric_series (name, project);
CREATE TABLE otlp_metric_points (
    point_id bigserial PRIMARY KEY,
    series_id bigint NOT NULL,
    time_ns bigint NOT NULL,
    start_ns bigint,
    value double precision,
    data text
);
CREATE UNIQUE INDEX otlp_metric_points_once ON otlp_metric_points (series_id, time_ns);
"""
"""OTLP metric series and points."""

_COVERAGE_INDEXES: Final = """
CREATE INDEX node_runs_running ON node_runs (run_id) WHERE status = 'running';
CREATE INDEX runs_without_start ON runs (started_at, run_id) WHERE started_event_id IS NULL;
CREATE INDEX producers_with_gaps ON producers (last_ts) WHERE max_seq >= events;
"""
"""The partial indexes coverage reads."""

_NODE_RUNS_PROJECT: Final = """
-- An attempt carries its run's project (NodeState.project; a database made since has it from the first script).
ALTER TABLE node_runs ADD COLUMN IF NOT EXISTS project text COLLATE "C";
UPDATE node_runs n SET project = r.project FROM runs r WHERE r.run_id = n.run_id;
"""
"""An attempt carries its run's project."""

_IDS_PER_PROJECT: Final = """
-- Run and event ids are unique per project (see store._namespace). An entry's namespace is its hashed
-- project, read from the entry itself: no column can be edited apart from what the hash covers.
CREATE FUNCTION flowledger_entry_project(entry bytea) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT coalesce(convert_from(entry, 'UTF8')::jsonb ->> 'project', '') $$;
ALTER TABLE ledger DROP CONSTRAINT ledger_event_id_key;
CREATE UNIQUE INDEX ledger_event_once ON ledger (event_id, flowledger_entry_project(entry));
DROP INDEX ledger_by_run;
CREATE INDEX ledger_by_run ON ledger (run_id, flowledger_entry_project(entry));
ALTER TABLE runs DROP CONSTRAINT runs_pkey;
CREATE UNIQUE INDEX runs_once ON runs (run_id, coalesce(project, ''));
ALTER TABLE node_runs DROP CONSTRAINT node_runs_pkey;
CREATE UNIQUE INDEX node_runs_once ON node_runs (run_id, coalesce(project, ''), span_id);
DROP INDEX node_runs_by_start;
CREATE INDEX node_runs_by_start ON node_runs (run_id, coalesce(project, ''), started_at, attempt, item,
    span_id);
DROP INDEX logs_by_attempt;
UPDATE logs l SET project = r.project FROM runs r WHERE r.run_id = l.run_id AND l.project IS NULL;
CREATE INDEX logs_by_attempt ON logs (run_id, coalesce(project, ''), span_id, id);
ALTER TABLE log_drops ADD COLUMN project text COLLATE "C";
UPDATE log_drops d SET project = r.project FROM runs r WHERE r.run_id = d.run_id;
ALTER TABLE log_drops DROP CONSTRAINT log_drops_pkey;
CREATE UNIQUE INDEX log_drops_once ON log_drops (run_id, coalesce(project, ''), span_id);
"""
"""Run and event ids unique per project."""

_ERROR_GROUPS_AND_STATISTICS: Final = """
-- Failures grouped by fingerprint (error type, normalised message, node, workflow), per project and UTC hour.
CREATE TABLE error_groups (
    project text COLLATE "C" NOT NULL, fingerprint text COLLATE "C" NOT NULL, hour text COLLATE "C" NOT NULL,
    type text COLLATE "C" NOT NULL, message text COLLATE "C" NOT NULL, node_id text COLLATE "C",
    workflow_id text COLLATE "C", count bigint NOT NULL, first_seen text COLLATE "C" NOT NULL,
    last_seen text COLLATE "C" NOT NULL,
    samples text NOT NULL,                 -- JSON [[at, run_id], ...], the newest ERROR_GROUP_SAMPLES
    PRIMARY KEY (project, fingerprint, hour)
);
CREATE INDEX error_groups_by_hour ON error_groups (hour);

-- Statistics of finished runs (dimensions workflow, agent, project) and node attempts (node), per project
-- ('*': all projects), UTC hour (grain 'h'), day ('d') and month ('m') of their start, and status. Costs in
-- nano-dollars, durations' sum in microseconds.
CREATE TABLE stats_rollup (
    dim text COLLATE "C" NOT NULL, grain text COLLATE "C" NOT NULL, project text COLLATE "C" NOT NULL,
    bucket text COLLATE "C" NOT NULL, key text COLLATE "C" NOT NULL, status text COLLATE "C" NOT NULL,
    runs bigint NOT NULL,
    cost_nanos bigint NOT NULL, costs bigint NOT NULL, cost_min_nanos bigint, cost_max_nanos bigint,
    duration_us bigint NOT NULL, durations bigint NOT NULL, duration_ms_min double precision,
    duration_ms_max double precision,
    PRIMARY KEY (dim, grain, project, bucket, key, status)
);
-- The duration histogram of the same places (statuses together), encoded as on SQLite.
CREATE TABLE stats_hist (
    dim text COLLATE "C" NOT NULL, grain text COLLATE "C" NOT NULL, project text COLLATE "C" NOT NULL,
    bucket text COLLATE "C" NOT NULL, key text COLLATE "C" NOT NULL, hist bytea NOT NULL,
    PRIMARY KEY (dim, grain, project, bucket, key)
);
"""
"""Error groups, statistics rollups and their histograms."""

_CUSTOM_METRICS: Final = """
-- Custom metrics added up per project, workflow, node, name, labels (canonical JSON) and UTC hour; no run ids.
CREATE TABLE custom_metrics (
    project text COLLATE "C" NOT NULL, workflow_id text COLLATE "C" NOT NULL, node_id text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL, labels text COLLATE "C" NOT NULL, hour text COLLATE "C" NOT NULL,
    count bigint NOT NULL, sum double precision NOT NULL, min double precision NOT NULL,
    max double precision NOT NULL,
    PRIMARY KEY (project, workflow_id, node_id, name, labels, hour)
);
CREATE INDEX custom_metrics_by_name ON custom_metrics (name, hour);
"""
"""Custom metric totals."""

_FULL_TEXT_SEARCH: Final = """
-- Full-text search over errors, payload text and log lines: the text with its tokens (a tsvector, indexed
-- with GIN) and its run (id and project: ids are per project); a purge deletes a run's rows.
CREATE TABLE search_text (
    id bigserial PRIMARY KEY, run_id text COLLATE "C" NOT NULL, project text COLLATE "C",
    source text COLLATE "C" NOT NULL, text text NOT NULL, words tsvector NOT NULL
);
CREATE INDEX search_text_by_run ON search_text (run_id, coalesce(project, ''));
CREATE INDEX search_text_words ON search_text USING gin (words) WITH (fastupdate = off);
-- Each run's scalar attributes, for attr.KEY=VALUE filters: a range of the unique index.
CREATE TABLE run_attributes (
    key text COLLATE "C" NOT NULL, value text COLLATE "C" NOT NULL, run_id text COLLATE "C" NOT NULL,
    project text COLLATE "C"
);
CREATE UNIQUE INDEX run_attributes_once ON run_attributes (key, value, run_id, coalesce(project, ''));
CREATE INDEX run_attributes_by_run ON run_attributes (run_id, coalesce(project, ''));
"""
"""Full-text search text and run attributes."""

_FORMAT1_HASHES: Final = """
-- The format-1 hash of every row of a ledger converted from format 1 (copied from SQLite), so checkpoints
-- taken before the conversion still check; ledger_origin holds that ledger's format-1 head.
CREATE TABLE ledger_v1 (seq bigint PRIMARY KEY, hash bytea NOT NULL);
CREATE TRIGGER ledger_v1_no_update BEFORE UPDATE ON ledger_v1 FOR EACH ROW
EXECUTE FUNCTION flowledger_refuse('the ledger is append-only: UPDATE is refused');
CREATE TRIGGER ledger_v1_no_delete BEFORE DELETE ON ledger_v1 FOR EACH ROW
EXECUTE FUNCTION flowledger_refuse('the ledger is append-only: DELETE is refused');
CREATE TRIGGER ledger_v1_no_truncate BEFORE TRUNCATE ON ledger_v1 FOR EACH STATEMENT
EXECUTE FUNCTION flowledger_refuse('the ledger is append-only: TRUNCATE is refused');
"""
"""The format-1 hashes of a ledger converted from format 1."""

_SEARCH_HITS_BY_WINDOWS: Final = """
-- The run ids of the newest `wanted` texts matching a search, newest first. First any `wanted` matches, in no
-- order: fewer than that are all of them (a rare word, read through the GIN index), sorted and done. Else three
-- windows of ids from the newest, `first_window` wide and then four times wider each, then the older rest,
-- each read with a LIMIT of the hits still wanted: a common word stops within the windows. EXECUTE plans each
-- query for its own search and bounds (never a generic plan that ignores how common the words are).
CREATE FUNCTION flowledger_search_hits(query tsquery, wanted integer, first_window bigint) RETURNS text[]
LANGUAGE plpgsql STABLE AS $$
DECLARE
  hi bigint := (SELECT max(id) FROM search_text);
  width bigint := greatest(first_window, 1);
  found text[] := '{}';
  more text[];
  matched bigint;
BEGIN
  EXECUTE 'SELECT array_agg(h.run_id ORDER BY h.id DESC), count(*) FROM (SELECT s.id, s.run_id FROM search_text s '
          'WHERE s.words @@ $1 LIMIT $2) h'
    INTO more, matched USING query, wanted;
  IF matched < wanted THEN
    RETURN coalesce(more, '{}');
  END IF;
  FOR step IN 1..3 LOOP
    EXIT WHEN hi <= 0 OR cardinality(found) >= wanted;
    EXECUTE 'SELECT array_agg(h.run_id ORDER BY h.id DESC) FROM (SELECT s.id, s.run_id FROM search_text s '
            'WHERE s.words @@ $1 AND s.id > $2 AND s.id <= $3 ORDER BY s.id DESC LIMIT $4) h'
      INTO more USING query, hi - width, hi, wanted - cardinality(found);
    found := found || coalesce(more, '{}');
    hi := hi - width;
    width := width * 4;
  END LOOP;
  IF hi > 0 AND cardinality(found) < wanted THEN
    EXECUTE 'SELECT array_agg(h.run_id ORDER BY h.id DESC) FROM (SELECT s.id, s.run_id FROM search_text s '
            'WHERE s.words @@ $1 AND s.id <= $2 ORDER BY s.id DESC LIMIT $3) h'
      INTO more USING query, hi, wanted - cardinality(found);
    found := found || coalesce(more, '{}');
  END IF;
  RETURN found;
END $$;
"""
"""Searches read the newest hits window by window."""

_RUN_LISTINGS_BY_PROJECT_TOO: Final = """
-- Run listings are ordered newest first, then by run id, then by project, no project first (see
-- store._query.NEWEST_FIRST): each listing index that ends with the run id gets the project next.
DROP INDEX runs_by_start;
CREATE INDEX runs_by_start ON runs (started_at DESC NULLS LAST, run_id DESC, project NULLS FIRST);
DROP INDEX runs_by_workflow;
CREATE INDEX runs_by_workflow ON runs (workflow_id, started_at DESC NULLS LAST, run_id DESC, project NULLS FIRST);
DROP INDEX runs_by_status;
CREATE INDEX runs_by_status ON runs (status, started_at DESC NULLS LAST, run_id DESC, project NULLS FIRST);
DROP INDEX runs_by_parent;
CREATE INDEX runs_by_parent ON runs (parent_run_id, started_at DESC NULLS LAST, run_id DESC, project NULLS FIRST);
"""

_WIDE_STATISTICS: Final = """
-- Money in nano-dollars and durations in microseconds may add up past 2**63 (about 9.2 billion USD, or 292,000
-- years): numeric keeps their sums exact at any size, where bigint refused them.
ALTER TABLE stats_rollup ALTER COLUMN cost_nanos TYPE numeric, ALTER COLUMN cost_min_nanos TYPE numeric,
    ALTER COLUMN cost_max_nanos TYPE numeric, ALTER COLUMN duration_us TYPE numeric;
"""
"""Statistics' sums of money and durations past 2**63."""

_LEDGER_FORMAT_3: Final = """
-- Ledger format 3 (store._entry): new entries ("v": 3) hash as SHA-256(0x00 || prev_hash || entry), their own
-- Merkle leaf; entries written before stay format 2 and verify as before. The version tells a flowledger before
-- format 3, which would check these entries by format 2's rule, to refuse the database.
COMMENT ON COLUMN ledger.entry IS
    'canonical UTF-8 JSON of the entry; its "v" (2 or 3) says how it is hashed and how it is a Merkle leaf';
"""
"""Ledger format 3."""

_PRODUCERS_PER_PROJECT: Final = """
-- A producer is its project's, as a run is (see store._namespace): keyed by its id and its project's namespace
-- ('' for none), the same producer id sent in two projects is two producers, and one project's events and
-- sequence gaps never count in the other's figures or coverage. Every row keeps its project (the one that sent
-- its id first): what other projects added to it cannot be told apart here; a rebuild refolds it from the ledger.
ALTER TABLE producers DROP CONSTRAINT producers_pkey;
CREATE UNIQUE INDEX producers_once ON producers (producer_id, coalesce(project, ''));
CREATE INDEX producers_by_project ON producers (project);
"""
"""Producers per project."""

_OTLP_INTEGER_VALUES: Final = """
-- A gauge or sum point sent as asInt keeps its integer here, exact over the whole int64 range (value is NULL);
-- value keeps an asDouble. Points stored before have their integers in value, as doubles.
ALTER TABLE otlp_metric_points ADD COLUMN IF NOT EXISTS int_value bigint;
"""
"""OTLP integer metric values kept exactly."""

_LONG_KEYS_BY_DIGEST: Final = """
-- An index entry holds at most 2,704 bytes: an attribute value (1,024 characters, up to 4 bytes each) or a metric's
-- labels (8 of 128 characters) can be longer, and one such row failed its whole batch. Those columns are keyed by
-- their SHA-256 instead (flowledger_digest); an attr.KEY=VALUE filter reads the range of the value's digest and
-- compares the value itself. IMMUTABLE, as an index needs: convert_to is only STABLE, but a database's encoding
-- never changes.
CREATE FUNCTION flowledger_digest(value text) RETURNS bytea LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT sha256(convert_to(value, 'UTF8')) $$;
DROP INDEX run_attributes_once;
CREATE UNIQUE INDEX run_attributes_once ON run_attributes (key, flowledger_digest(value), run_id,
    coalesce(project, ''));
ALTER TABLE custom_metrics DROP CONSTRAINT custom_metrics_pkey;
CREATE UNIQUE INDEX custom_metrics_once ON custom_metrics (project, workflow_id, node_id, name,
    flowledger_digest(labels), hour);
"""
"""Attribute values and metric labels keyed by their digest."""

PG_MIGRATIONS: Final[tuple[str, ...]] = (
    _REFUSE + _LEDGER + _RUNS_AND_ATTEMPTS,
    _LOG_LINES,
    _OTLP_SPANS,
    _SAMPLED_OUT,
    _PURGED_TOTALS,
    _OTLP_LOG_RECORDS,
    _OTLP_METRICS,
    _COVERAGE_INDEXES,
    _NODE_RUNS_PROJECT,
    _IDS_PER_PROJECT,
    _ERROR_GROUPS_AND_STATISTICS,
    _CUSTOM_METRICS,
    _FULL_TEXT_SEARCH,
    _FORMAT1_HASHES,
    _SEARCH_HITS_BY_WINDOWS,
    _RUN_LISTINGS_BY_PROJECT_TOO,
    _WIDE_STATISTICS,
    _LEDGER_FORMAT_3,
    _PRODUCERS_PER_PROJECT,
    _OTLP_INTEGER_VALUES,
    _LONG_KEYS_BY_DIGEST,
)
"""Each script brings the schema one version up (version N is ``PG_MIGRATIONS[N - 1]``); append new ones at the end."""
