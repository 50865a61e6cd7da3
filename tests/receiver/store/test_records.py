"""The run and node-attempt declarations are the one source: every derived view follows them."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from flowledger._wire import event_schema
from flowledger.receiver._export import CSV_COLUMNS, csv_header
from flowledger.receiver.api._openapi import openapi_document
from flowledger.receiver.store._fold import NODE_COLUMNS, RUN_COLUMNS
from flowledger.receiver.store._migrations import migrate
from flowledger.receiver.store._records import (
    NODE_FIELDS,
    NODE_PAYLOAD_SQL,
    RUN_FIELDS,
    RUN_PAYLOAD_SQL,
    FieldKind,
    csv_columns,
    stored_fields,
)
from flowledger.receiver.store._sqlite import SqliteStore
from tests.receiver._support import typical_run
from tests.receiver.store.conformance.conftest import prepared


def test_openapi_schemas_are_the_declared_fields() -> None:
    """The OpenAPI Run and Node schemas list exactly the declared fields, in order."""
    schemas = openapi_document()["components"]["schemas"]
    assert list(schemas["Run"]["properties"]) == [f.name for f in RUN_FIELDS if not f.detail]
    assert list(schemas["Node"]["properties"]) == [f.name for f in NODE_FIELDS]
    assert schemas["Run"]["required"] == [f.name for f in RUN_FIELDS if f.required and not f.detail]


def test_openapi_run_detail_schema_is_the_declared_detail_fields() -> None:
    """RunDetail adds to Run exactly the declared detail-only fields (input, output, attributes), nodes, children."""
    run, detail_only = openapi_document()["components"]["schemas"]["RunDetail"]["allOf"]
    assert run == {"$ref": "#/components/schemas/Run"}
    declared = [f for f in RUN_FIELDS if f.detail]
    assert [f.name for f in declared] == ["input", "output", "attributes"]
    assert list(detail_only["properties"]) == [*(f.name for f in declared), "nodes", "children"]
    assert detail_only["required"] == [*(f.name for f in declared if f.required), "nodes", "children"]
    assert all(detail_only["properties"][f.name] == f.schema for f in declared)


def test_fields_the_api_fills_in_are_declared() -> None:
    """trace_url is a declared run field the API fills in: documented on Run, never read from the store."""
    api_filled = [f.name for f in RUN_FIELDS if f.kind is FieldKind.API]
    assert api_filled == ["trace_url"]
    assert "trace_url" in openapi_document()["components"]["schemas"]["Run"]["properties"]
    assert "trace_url" not in {f.name for f in stored_fields(RUN_FIELDS, detail=True)}


def test_csv_header_is_the_declared_export_fields() -> None:
    """The CSV columns are the exported run fields, objects flattened to <name>_<part>."""
    assert csv_columns(RUN_FIELDS) == CSV_COLUMNS
    assert csv_header().strip().split(",") == list(CSV_COLUMNS)
    exported = [f.name for f in RUN_FIELDS if f.export]
    assert all(any(c == n or c.startswith(n + "_") for n in exported) for c in CSV_COLUMNS)


def test_csv_has_every_plain_run_field_of_the_contract() -> None:
    """A spreadsheet of runs has the context and lineage fields: who, which agent, why, started by and resuming."""
    for name in ("project", "user_id", "agent_id", "intent", "parent_run_id", "resumed_from"):
        assert name in CSV_COLUMNS, name


def test_declared_columns_are_projection_columns() -> None:
    """Every column a field reads is a projection column (RunState/NodeState) or a payload from the ledger."""
    for f in stored_fields(RUN_FIELDS, detail=True):
        assert set(f.sources) <= set(RUN_COLUMNS) | set(RUN_PAYLOAD_SQL), f.name
    for f in stored_fields(NODE_FIELDS):
        assert set(f.sources) <= set(NODE_COLUMNS) | set(NODE_PAYLOAD_SQL), f.name


def test_migrated_tables_have_the_fold_columns(tmp_path: Path) -> None:
    """The runs and node_runs tables the migrations create have exactly the fold's columns."""
    conn = sqlite3.connect(tmp_path / "m.db", isolation_level=None)
    migrate(conn)
    for table, columns in (("runs", RUN_COLUMNS), ("node_runs", NODE_COLUMNS)):
        assert {row[1] for row in conn.execute(f"PRAGMA table_info({table})")} == set(columns), table
    conn.close()


def test_api_json_has_the_declared_keys(tmp_path: Path) -> None:
    """A stored run's JSON has the declared stored run keys (detail ones too), nodes, children; nodes the node keys."""
    run = typical_run()

    async def main() -> dict[str, object] | None:
        store = SqliteStore(tmp_path / "r.db")
        await store.open()
        try:
            await store.append(prepared(run.events))
            return await store.get_run(run.run_id)
        finally:
            await store.close()

    got = asyncio.run(main())
    assert got is not None
    assert list(got) == [*(f.name for f in stored_fields(RUN_FIELDS, detail=True)), "nodes", "children"]
    nodes = got["nodes"]
    assert isinstance(nodes, list)
    assert all(list(node) == [f.name for f in NODE_FIELDS] for node in nodes)


def test_cli_tables_show_the_declared_columns() -> None:
    """The CLI's run and node tables have one column per field declared with a table position."""
    from flowledger.receiver.cli._commands import _header, _table_fields

    assert [_header(f) for f in _table_fields(RUN_FIELDS)] == [
        "run_id",
        "workflow",
        "status",
        "mode",
        "started_at",
        "duration",
        "error",
    ]
    assert [_header(f) for f in _table_fields(NODE_FIELDS)] == [
        "node",
        "attempt",
        "item",
        "status",
        "started_at",
        "duration",
        "detail",
    ]


# Wire fields that are kept in the ledger (and in spans) but are not fields of the
# projected records, each with where it goes instead. A field the wire format
# gains must be declared in _records.py or listed here: a half-done change fails.
_NODE_WIRE_NOT_PROJECTED = {
    "attributes": "span attributes and the ledger",
    "definition_sha256": "the ledger (the run's definition)",
    "trace_id": "the run's trace_id",
    "workflow_id": "the run's workflow_id; the key of the custom metric totals",
    "output_full": "the blobs table, keyed by output_sha256 (taken out of the event at ingest)",
}
_RUN_WIRE_NOT_PROJECTED = {
    "limits": "the ledger (the SDK enforces them)",
    "service_name": "span resources",
    "span_id": "spans",
    "parent_span_id": "spans",
    "trigger_data": "the run's input (a detail field), read from the ledger",
    "trigger_data_sha256": "the ledger (a resume reads it with the run's evidence)",
    "trigger_data_capture": "the ledger (a resume reads it with the run's evidence)",
    "trigger_data_full": "the blobs table, keyed by trigger_data_sha256 (taken out of the event at ingest)",
}


def _wire_fields(*kinds: str) -> set[str]:
    defs = event_schema()["$defs"]
    return {name for kind in kinds for name in defs[kind]["properties"]}


def test_every_node_wire_field_is_projected_or_listed() -> None:
    """Each data field of node_started/node_finished is a declared node field or named as not projected."""
    declared = {f.name for f in NODE_FIELDS}
    assert _wire_fields("node_started", "node_finished") - declared == set(_NODE_WIRE_NOT_PROJECTED)


def test_every_run_wire_field_is_projected_or_listed() -> None:
    """Each data field of run_started/run_finished/heartbeat is a declared run field or named as not projected."""
    declared = {f.name for f in RUN_FIELDS}
    assert _wire_fields("run_started", "run_finished", "heartbeat") - declared == set(_RUN_WIRE_NOT_PROJECTED)
