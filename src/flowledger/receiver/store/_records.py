"""The fields of a run and of a node attempt, declared once.

Each :class:`RecordField` says what one key of the API's JSON is: its JSON
Schema, what it means, the columns it is read from and how, where it is
answered (every listing, or only one run's detail) and where else it shows
(the CSV export, the CLI's tables). A field of kind :attr:`FieldKind.API`
(``trace_url``) is not stored: the API fills it in from its configuration. Everything else derives from these
two tables: the ``SELECT`` lists and the JSON shape of the queries
(:mod:`._query`, :mod:`._viewer_query`), the OpenAPI schemas
(:mod:`flowledger.receiver.api._openapi`), the CSV columns
(:mod:`flowledger.receiver._export`) and the CLI's tables. Rows are read
by column name (:class:`sqlite3.Row`), never by position.

The projection columns themselves are the fields of ``RunState`` and
``NodeState`` (:mod:`._fold`); a test checks that every column named here is
one of them (or a payload read from the ledger) and that the tables the
migrations create have exactly those columns.

Adding a field to node records: a ``NodeState`` field and where the fold sets
it, a migration adding the column, one entry in :data:`NODE_FIELDS`, and the
viewer's run page (``static/run.js``) if the page should show it.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from flowledger._money import nanos_to_usd, usd_to_nanos
from flowledger._wire import NodeStatus, RunStatus

__all__ = [
    "NODE_FIELDS",
    "NODE_PAYLOAD_SQL",
    "RUN_FIELDS",
    "RUN_PAYLOAD_SQL",
    "ColumnsByName",
    "FieldKind",
    "RecordField",
    "csv_columns",
    "csv_values",
    "detail_fields",
    "field_value",
    "listed_fields",
    "record_json",
    "record_schema",
    "select_list",
    "stored_fields",
]


class ColumnsByName(Protocol):
    """A result row read by column name (:class:`sqlite3.Row`, a dict)."""

    def __getitem__(self, column: str, /) -> Any: ...


class FieldKind(enum.Enum):
    """How a field's JSON value is made from its columns."""

    VALUE = "value"
    """The column as it is."""
    BOOLEAN = "boolean"
    """An INTEGER column read as true/false (null stays null)."""
    JSON = "json"
    """A column of JSON text, parsed."""
    LIST = "list"
    """A column of a JSON array's text, parsed; ``[]`` when the column is null (the record had none)."""
    OBJECT = "object"
    """An object with one key per column (``parts``); null when its first two columns are both null."""
    COST = "cost"
    """The cost columns as ``{tokens, tool_calls, external_requests, usd, breakdown}``; null when all are null.
    ``usd`` is exact to the nano-dollar (:mod:`flowledger._money`), whatever an older version stored;
    ``breakdown`` is ``{key: {count, usd_nanos, usd}}`` by category, null for events that had none."""
    API = "api"
    """Not stored: filled in by the API from the receiver's configuration (``trace_url``); the store leaves it out."""
    ATTACHED = "attached"
    """Not a column of the record's row: one run's detail attaches it from a table of its own (an attempt's logs)."""


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


_STR: Final = {"type": "string"}
_NSTR: Final = _nullable(_STR)
_NNUM: Final = _nullable({"type": "number"})
_NINT: Final = _nullable({"type": "integer"})
_NBOOL: Final = _nullable({"type": "boolean"})
_COST_PARTS: Final = ("tokens", "tool_calls", "external_requests", "usd")
_COST_SCHEMA: Final = _nullable(
    {
        "type": "object",
        "required": list(_COST_PARTS),
        "properties": {
            "tokens": {"type": "integer"},
            "tool_calls": {"type": "integer"},
            "external_requests": {"type": "integer"},
            "usd": {"type": "number"},
            "breakdown": _nullable(
                {
                    "type": "object",
                    "description": "By category: tokens_in, tokens_out, tokens, tool_calls, external_requests, "
                    "external_requests:<service>, penalty:<kind>, other.",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["count", "usd_nanos", "usd"],
                        "properties": {
                            "count": {"type": "integer"},
                            "usd_nanos": {"type": "integer"},
                            "usd": {"type": "number"},
                        },
                    },
                }
            ),
        },
    }
)
_COST_COLUMNS: Final = (*(f"cost_{part}" for part in _COST_PARTS), "cost_breakdown")
_COST_CSV_EXTRA: Final = ("tokens_in", "tokens_out", "penalties", "penalties_usd")
"""The breakdown in the CSV export: a few stable columns (``cost_tokens_in``...); JSONL has it whole."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordField:
    """One key of a run's or a node attempt's JSON."""

    name: str
    """The key in the API's JSON."""
    schema: dict[str, Any]
    """Its JSON Schema (OpenAPI)."""
    description: str
    kind: FieldKind = FieldKind.VALUE
    columns: tuple[str, ...] = ()
    """The result columns it is read from; empty means one column named like the field."""
    parts: tuple[str, ...] = ()
    """For OBJECT and COST: the object's keys, one per column."""
    required: bool = True
    """Listed as required in the OpenAPI schema (the fields every answer has had from the start)."""
    export: bool = False
    """In the CSV export of runs (an object as one column per part: ``<name>_<part>``)."""
    table: tuple[int, str] | None = None
    """Position and header of its column in the CLI's table of runs or nodes (None: not shown there)."""
    table_if_set: bool = False
    """Its column is shown only when some record of the table has a value for it (the run context)."""
    detail: bool = False
    """Only in one run's detail (``GET /v1/runs/{run_id}``, the viewer's run header), not in listings."""
    large: bool = False
    """A captured payload that may be large: the viewer defers it past its inline limit."""

    @property
    def sources(self) -> tuple[str, ...]:
        """The result columns the field is read from."""
        return self.columns or (self.name,)


def _field(name: str, schema: dict[str, Any], description: str, **extra: Any) -> RecordField:
    return RecordField(name=name, schema=schema, description=description, **extra)


RUN_FIELDS: Final[tuple[RecordField, ...]] = (
    _field("run_id", _STR, "The run's id (UUIDv7).", export=True, table=(1, "run_id")),
    _field("workflow_id", _NSTR, "The workflow's stable id.", export=True, table=(2, "workflow")),
    _field("workflow_name", _NSTR, "The workflow's display name.", export=True),
    _field("workflow_version", _NSTR, "The workflow's version, if it has one.", export=True),
    _field(
        "status",
        {"enum": [s.value for s in RunStatus]},
        "running, succeeded, failed, aborted or stuck.",
        export=True,
        table=(3, "status"),
    ),
    _field("trigger_type", _NSTR, "manual, http or schedule.", export=True),
    _field(
        "dry_run", _NBOOL, "Whether effects were simulated.", kind=FieldKind.BOOLEAN, export=True, table=(3, "mode")
    ),
    _field("started_at", _NSTR, "When the run started (RFC 3339 UTC).", export=True, table=(4, "started_at")),
    _field("completed_at", _NSTR, "When the run finished.", export=True),
    _field("duration_ms", _NNUM, "How long the run took.", export=True, table=(5, "duration")),
    _field(
        "error",
        _nullable(
            {
                "type": "object",
                "required": ["type", "message", "node_id"],
                "properties": {
                    "type": _NSTR,
                    "message": _NSTR,
                    "node_id": _NSTR,
                    "fingerprint": {
                        "type": "string",
                        "description": "The error group it belongs to (GET /api/errors); one run's detail only.",
                    },
                },
            }
        ),
        "Why the run failed, and at which node.",
        kind=FieldKind.OBJECT,
        columns=("error_type", "error_message", "error_node_id"),
        parts=("type", "message", "node_id"),
        export=True,
        table=(6, "error"),
    ),
    _field(
        "cost",
        _COST_SCHEMA,
        "What the run reported with flowledger.cost.",
        kind=FieldKind.COST,
        columns=_COST_COLUMNS,
        parts=_COST_PARTS,
        export=True,
    ),
    _field("trace_id", _NSTR, "The OpenTelemetry trace the run belongs to.", export=True),
    _field(
        "project",
        _NSTR,
        "The run's project: the one its events name (flowledger.run(project=...), FLOWLEDGER_PROJECT), "
        "or the project of the API key it was sent with.",
        required=False,
        export=True,
        table=(2, "project"),
        table_if_set=True,
    ),
    _field(
        "user_id",
        _NSTR,
        "Who the run was for: the user it acted on behalf of.",
        required=False,
        export=True,
        table=(2, "user"),
        table_if_set=True,
    ),
    _field(
        "agent_id",
        _NSTR,
        "Which agent (or service) ran it.",
        required=False,
        export=True,
        table=(2, "agent"),
        table_if_set=True,
    ),
    _field(
        "intent",
        _NSTR,
        "Why it ran: the intent it was started with.",
        required=False,
        export=True,
        table=(5, "intent"),
        table_if_set=True,
    ),
    _field(
        "parent_run_id", _NSTR, "The run that started this one (a delegating run), if any.", required=False, export=True
    ),
    _field("last_seen_at", _NSTR, "The newest event of the run.", required=False),
    _field("stuck_reason", _NSTR, "Why the sweeper marked the run stuck.", required=False),
    _field("heartbeat_interval_s", _NNUM, "How often the run promised a heartbeat.", required=False),
    _field(
        "finish_conflicts",
        _nullable({"type": "array", "items": {"enum": [s.value for s in RunStatus if s.terminal]}}),
        "Statuses that other run_finished events of the run reported: the run keeps the one that finished "
        "earliest by the producer's clock; null when they all agree.",
        kind=FieldKind.JSON,
        required=False,
    ),
    _field(
        "input",
        {},
        "The run's trigger data as captured (redacted, truncated).",
        kind=FieldKind.JSON,
        columns=("input_json",),
        detail=True,
        large=True,
    ),
    _field(
        "output",
        {},
        "The run's captured output.",
        kind=FieldKind.JSON,
        columns=("output_json",),
        detail=True,
        large=True,
    ),
    _field(
        "attributes",
        {},
        "The attributes the run started with.",
        kind=FieldKind.JSON,
        columns=("attributes_json",),
        detail=True,
    ),
    _field(
        "trace_url",
        _NSTR,
        "The run's trace in an external tracing backend (FLOWLEDGER_TRACE_URL_TEMPLATE); null without one.",
        kind=FieldKind.API,
        required=False,
    ),
    _field(
        "resumed_from", _NSTR, "The run this run resumes (flowledger resume, --resume).", required=False, export=True
    ),
    _field("definition_sha256", _NSTR, "The sha256 of the workflow definition the run ran.", required=False),
    _field(
        "resumed_from_definition_sha256",
        _NSTR,
        "The definition of the run it resumes (the two differ when the definition changed in between).",
        required=False,
    ),
)
"""The fields of a run, in the order of its JSON."""

NODE_FIELDS: Final[tuple[RecordField, ...]] = (
    _field("node_id", _NSTR, "The node's id in the definition.", table=(1, "node")),
    _field("attempt", _NINT, "Attempt number, from 1.", table=(2, "attempt")),
    _field(
        "status",
        _nullable({"enum": [s.value for s in NodeStatus]}),
        "running, succeeded, failed or skipped.",
        table=(4, "status"),
    ),
    _field("skip_reason", _NSTR, "Why a skipped node did not run."),
    _field("started_at", _NSTR, "When the attempt started.", table=(5, "started_at")),
    _field("completed_at", _NSTR, "When the attempt finished."),
    _field("duration_ms", _NNUM, "How long the attempt took.", table=(6, "duration")),
    _field("input", {}, "The captured input (redacted, truncated).", kind=FieldKind.JSON, columns=("input_json",)),
    _field("output", {}, "The captured output.", kind=FieldKind.JSON, columns=("output_json",)),
    _field(
        "error",
        _nullable(
            {
                "type": "object",
                "required": ["type", "message", "stack"],
                "properties": {"type": _NSTR, "message": _NSTR, "stack": _NSTR},
            }
        ),
        "Why the attempt failed, with the stack.",
        kind=FieldKind.OBJECT,
        columns=("error_type", "error_message", "error_stack"),
        parts=("type", "message", "stack"),
        table=(7, "detail"),
    ),
    _field("span_id", _STR, "The attempt's span id: its key within the run."),
    _field("item", _NINT, "Index of the item of a mapped node.", required=False, table=(3, "item")),
    _field("effect", _NBOOL, "Whether the node has effects.", kind=FieldKind.BOOLEAN, required=False),
    _field("idempotency_key", _NSTR, "The effect's idempotency key.", required=False),
    _field("simulated", _NBOOL, "Whether the effect was simulated.", kind=FieldKind.BOOLEAN, required=False),
    _field("duplicate", _NBOOL, "Whether the effect had run before.", kind=FieldKind.BOOLEAN, required=False),
    _field("location", {}, "Where the node's code is: {file, line, path}.", kind=FieldKind.JSON, required=False),
    _field("parent_span_id", _NSTR, "The span of the run (or caller) the attempt is part of.", required=False),
    _field(
        "cost",
        _COST_SCHEMA,
        "What the attempt reported with flowledger.cost.",
        kind=FieldKind.COST,
        columns=_COST_COLUMNS,
        parts=_COST_PARTS,
        required=False,
    ),
    _field(
        "output_sha256",
        _NSTR,
        "sha256 of the complete output's JSON text, when the node captures in full (capture: full).",
        required=False,
    ),
    _field(
        "output_capture",
        _NSTR,
        "full, redacted, unrepresentable or too_large: whether the complete output is stored as it was.",
        required=False,
    ),
    _field(
        "metrics",
        {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "labels", "count", "sum", "min", "max", "value"],
                "properties": {
                    "name": _STR,
                    "labels": {"type": "object", "additionalProperties": _STR},
                    "count": {"type": "integer"},
                    "sum": {"type": "number"},
                    "min": {"type": "number"},
                    "max": {"type": "number"},
                    "value": {"type": "number"},
                },
            },
        },
        "What the attempt recorded with flowledger.metric: one summary per name and labels (value is the last); [] "
        "when none.",
        kind=FieldKind.LIST,
        columns=("metrics_json",),
        required=False,
    ),
    _field(
        "artifacts",
        {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": _STR,
                    "uri": _NSTR,
                    "media_type": _NSTR,
                    "size_bytes": _NINT,
                    "sha256": _NSTR,
                    "sha256_skipped": _NSTR,
                },
            },
        },
        "What the attempt recorded with flowledger.artifact: name, uri, media type, size and sha256 "
        "(sha256_skipped says why a file was not hashed); [] when none.",
        kind=FieldKind.LIST,
        columns=("artifacts_json",),
        required=False,
    ),
    _field(
        "logs",
        {"type": "array", "items": {"type": "object", "required": ["ts", "level", "logger", "message"]}},
        "The attempt's captured log lines in order: {id, ts, level, levelno, logger, message, source, and "
        "exception, trace_id, span_id, repeats when set}; in one run's detail at most "
        "LOGS_INLINE_MAX of them, the rest behind logs_url.",
        kind=FieldKind.ATTACHED,
        required=False,
    ),
    _field(
        "logs_url",
        _NSTR,
        "Where all the attempt's log lines are (GET /api/runs/{run_id}/attempts/{span_id}/logs) when "
        "logs holds only the first of them; null otherwise.",
        kind=FieldKind.ATTACHED,
        required=False,
    ),
    _field(
        "logs_dropped",
        _nullable({"type": "object", "properties": {"lines": {"type": "integer"}, "bytes": {"type": "integer"}}}),
        "The log lines and bytes the capture dropped past its per-attempt caps; null when none.",
        kind=FieldKind.ATTACHED,
        required=False,
    ),
)
"""The fields of a node attempt, in the order of its JSON."""

NODE_PAYLOAD_SQL: Final = {
    "input_json": "li.body -> '$.data.input'",
    "output_json": "lo.body -> '$.data.output'",
    "error_stack": "lo.body ->> '$.data.error.stack'",
    "metrics_json": "lo.body -> '$.data.metrics'",
    "artifacts_json": "lo.body -> '$.data.artifacts'",
}
"""Node columns read from the payloads of the attempt's ledger entries (``li``: its input, ``lo``: its finish)."""
RUN_PAYLOAD_SQL: Final = {
    "input_json": "ls.body -> '$.data.trigger_data'",
    "output_json": "lf.body -> '$.data.output'",
    "attributes_json": "ls.body -> '$.data.attributes'",
}
"""Run payloads read from the payloads of its ledger entries (``ls``: run_started, ``lf``: run_finished)."""


_NOT_READ: Final = frozenset({FieldKind.API, FieldKind.ATTACHED})


def listed_fields(fields: Sequence[RecordField]) -> tuple[RecordField, ...]:
    """The fields of a record in every answer (listings and detail alike)."""
    return tuple(f for f in fields if not f.detail)


def detail_fields(fields: Sequence[RecordField]) -> tuple[RecordField, ...]:
    """The fields only one run's detail has."""
    return tuple(f for f in fields if f.detail)


def stored_fields(fields: Sequence[RecordField], *, detail: bool = False) -> tuple[RecordField, ...]:
    """The fields the store reads (not those the API fills in), with the detail-only ones when ``detail``."""
    return tuple(f for f in fields if f.kind not in _NOT_READ and (detail or not f.detail))


def select_list(fields: Sequence[RecordField], table: str, computed: Mapping[str, str] | None = None) -> str:
    """The ``SELECT`` list of ``fields`` from table alias ``table``, computed columns under their names."""
    computed = computed or {}
    out: list[str] = []
    for record_field in fields:
        for column in record_field.sources:
            expr = computed.get(column)
            out.append(f"{table}.{column}" if expr is None else f"{expr} AS {column}")
    return ", ".join(out)


def field_value(record_field: RecordField, row: ColumnsByName) -> Any:
    """The JSON value of one stored field from a row with its columns, read by name."""
    kind = record_field.kind
    if kind is FieldKind.VALUE:
        return row[record_field.sources[0]]
    if kind is FieldKind.BOOLEAN:
        value = row[record_field.sources[0]]
        return None if value is None else bool(value)
    if kind is FieldKind.JSON or kind is FieldKind.LIST:
        text = row[record_field.sources[0]]
        if text is None:
            return [] if kind is FieldKind.LIST else None
        return json.loads(text)
    if kind is FieldKind.API:
        raise ValueError(f"{record_field.name} is filled in by the API, not read from the store.")
    if kind is FieldKind.ATTACHED:
        raise ValueError(f"{record_field.name} is attached from a table of its own, not read from the record's row.")
    values = [row[column] for column in record_field.sources]
    if kind is FieldKind.OBJECT:
        if values[0] is None and values[1] is None:
            return None
        return dict(zip(record_field.parts, values, strict=True))
    tokens, tool_calls, external_requests, usd, breakdown = values
    if tokens is None and tool_calls is None and external_requests is None and usd is None and breakdown is None:
        return None
    return {
        "tokens": tokens or 0,
        "tool_calls": tool_calls or 0,
        "external_requests": external_requests or 0,
        "usd": 0.0 if usd is None else nanos_to_usd(usd_to_nanos(usd)),
        "breakdown": None if breakdown is None else _breakdown_json(breakdown),
    }


def _breakdown_json(text: str) -> dict[str, Any]:
    """``{key: {count, usd_nanos, usd}}`` from the stored ``{key: {count, usd_nanos}}``."""
    return {
        key: {"count": entry["count"], "usd_nanos": entry["usd_nanos"], "usd": nanos_to_usd(entry["usd_nanos"])}
        for key, entry in json.loads(text).items()
    }


def _cost_csv(cost: Mapping[str, Any]) -> list[Any]:
    """The values of :data:`_COST_CSV_EXTRA` from a cost's JSON (empty cells without a breakdown)."""
    breakdown = cost.get("breakdown")
    if not breakdown:
        return [None] * len(_COST_CSV_EXTRA)
    penalties = [entry for key, entry in breakdown.items() if key.startswith("penalty:")]
    return [
        breakdown.get("tokens_in", {}).get("count", 0),
        breakdown.get("tokens_out", {}).get("count", 0),
        sum(entry["count"] for entry in penalties),
        nanos_to_usd(sum(entry["usd_nanos"] for entry in penalties)),
    ]


def record_json(fields: Sequence[RecordField], row: ColumnsByName) -> dict[str, Any]:
    """The JSON of one record from a row with (at least) the fields' columns, read by name."""
    return {record_field.name: field_value(record_field, row) for record_field in fields}


def record_schema(fields: Sequence[RecordField]) -> dict[str, Any]:
    """The JSON Schema (OpenAPI) of a record."""
    return {
        "type": "object",
        "required": [f.name for f in fields if f.required],
        "properties": {f.name: f.schema for f in fields},
    }


def csv_columns(fields: Sequence[RecordField]) -> tuple[str, ...]:
    """The CSV header of the exported fields (an object flattened to ``<name>_<part>``)."""
    out: list[str] = []
    for f in fields:
        if f.export:
            out += [f"{f.name}_{part}" for part in f.parts] if f.parts else [f.name]
            if f.kind is FieldKind.COST:
                out += [f"{f.name}_{part}" for part in _COST_CSV_EXTRA]
    return tuple(out)


def csv_values(fields: Sequence[RecordField], record: Mapping[str, Any]) -> list[Any]:
    """One CSV row of a record's JSON, in :func:`csv_columns` order (null as an empty cell)."""
    out: list[Any] = []
    for f in fields:
        if not f.export:
            continue
        if f.parts:
            value = record.get(f.name) or {}
            out += [value.get(part) for part in f.parts]
            if f.kind is FieldKind.COST:
                out += _cost_csv(value)
        else:
            out.append(record.get(f.name))
    return ["" if value is None else value for value in out]
