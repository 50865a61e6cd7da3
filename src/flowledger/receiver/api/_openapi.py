"""The OpenAPI 3.1 description of the receiver's HTTP API (``GET /openapi.json``)."""

from __future__ import annotations

from functools import cache
from typing import Any, Final

from flowledger._version import __version__
from flowledger._wire import LogLevel, RunStatus
from flowledger.receiver._context_params import CONTEXT_PARAM_SCHEMAS
from flowledger.receiver._export import ExportFormat
from flowledger.receiver.api._openapi_analytics import ANALYTICS_PATHS, ANALYTICS_SCHEMAS
from flowledger.receiver.api._routes_integrity import DEFAULT_RECONCILE_LIMIT, MAX_RECONCILE_LIMIT
from flowledger.receiver.api._routes_metrics import CUSTOM_METRICS_PATH
from flowledger.receiver.store._children import CHILDREN_SCHEMA
from flowledger.receiver.store._integrity import DRIFT_SAMPLES, CoverageKind, CoverageStatus, DriftKind
from flowledger.receiver.store._logs import LOG_LINE_ID_MAX, LOG_PAGE_MAX
from flowledger.receiver.store._protocol import TOTAL_COUNT_MAX
from flowledger.receiver.store._records import NODE_FIELDS, RUN_FIELDS, detail_fields, listed_fields, record_schema
from flowledger.receiver.store._views import CURSOR_MAX_CHARS

__all__ = ["openapi_document"]


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


_STR = {"type": "string"}
_NSTR = _nullable(_STR)
_NINT = _nullable({"type": "integer"})
_ERROR_BODY = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}},
}


def _answer(description: str, schema: dict[str, Any], media: str = "application/json") -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


_RUN = record_schema(listed_fields(RUN_FIELDS))
_RUN_DETAIL_ONLY = record_schema(detail_fields(RUN_FIELDS))
_NODE = record_schema(NODE_FIELDS)

_TRACE_ID = {"type": "string", "pattern": "^(?!0{32})[0-9a-f]{32}$"}
_OTLP_ERROR = {
    "description": "A client mistake or a busy store, as an OTLP google.rpc.Status.",
    "content": {"application/json": {"schema": {"type": "object"}}, "application/x-protobuf": {"schema": _STR}},
}
_RUN_FILTERS = [
    {"name": "workflow_id", "in": "query", "schema": {"type": "string", "maxLength": 256}},
    {
        "name": "status",
        "in": "query",
        "description": "May repeat: runs in any of the statuses given (?status=failed&status=aborted).",
        "style": "form",
        "explode": True,
        "schema": {"type": "array", "items": {"enum": [s.value for s in RunStatus]}},
    },
    *CONTEXT_PARAM_SCHEMAS,
]


_CHECKPOINT_PATTERN: Final = "^[0-9]{1,18}:[0-9a-fA-F]{64}$"

_KIND_TALLY: Final = {
    "type": "object",
    "required": ["count", "samples"],
    "properties": {"count": {"type": "integer"}, "samples": {"type": "array", "items": {"type": "object"}}},
}
_COVERAGE: Final = {
    "type": "object",
    "required": ["status", "sessions_with_gaps", "events_missing", "checked_at", "kinds"],
    "properties": {
        "status": {"enum": [s.value for s in CoverageStatus]},
        "sessions_with_gaps": {"type": "integer"},
        "events_missing": {"type": "integer"},
        "checked_at": _STR,
        "kinds": {
            "type": "object",
            "required": [k.value for k in CoverageKind],
            "properties": {k.value: _KIND_TALLY for k in CoverageKind},
        },
    },
}
_DRIFT_TALLY: Final = {
    "type": "object",
    "required": ["count", "runs", "attempts", "samples"],
    "properties": {
        "count": {"type": "integer"},
        "runs": {"type": "integer"},
        "attempts": {"type": "integer"},
        "samples": {"type": "array", "items": _STR, "maxItems": DRIFT_SAMPLES},
    },
}
_RECONCILE: Final = {
    "type": "object",
    "required": [
        "clean",
        "drift_count",
        "runs_checked",
        "events_folded",
        "repaired",
        *(k.value for k in DriftKind),
        "next",
    ],
    "properties": {
        "clean": {"type": "boolean"},
        "drift_count": {"type": "integer"},
        "runs_checked": {"type": "integer"},
        "events_folded": {"type": "integer"},
        "repaired": {"type": "integer"},
        **{k.value: _DRIFT_TALLY for k in DriftKind},
        "next": {**_NSTR, "description": "Pass it back as after= for the following slice; null at the end."},
    },
}
_RECONCILE_PARAMS: Final = [
    {
        "name": "after",
        "in": "query",
        "description": "Check the run ids after this one (from the first when absent): the next of an answer.",
        "schema": {"type": "string", "maxLength": 256},
    },
    {
        "name": "limit",
        "in": "query",
        "description": "Run ids this request checks at most.",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_RECONCILE_LIMIT, "default": DEFAULT_RECONCILE_LIMIT},
    },
]
_NO_KEY: Final = "API keys are configured and the request has no valid one."
_INTEGRITY_PATHS: Final = {
    "/api/coverage": {
        "get": {
            "summary": "Runs and producer sessions missing core events (PASS or FAIL_CORE_MISSING)",
            "parameters": [
                {
                    "name": "since",
                    "in": "query",
                    "description": "Only runs started (producers heard from) at or after this RFC 3339 time.",
                    "schema": {"type": "string", "format": "date-time"},
                },
                {"name": "workflow_id", "in": "query", "schema": {"type": "string", "maxLength": 256}},
            ],
            "responses": {
                "200": _answer("Counts per kind, sessions_with_gaps and a few samples of each kind.", _COVERAGE),
                "400": _error("A query parameter is unknown, repeated or has a value that cannot be used."),
                "401": _error(_NO_KEY),
            },
        }
    },
    "/api/reconcile": {
        "get": {
            "summary": "Compare the projections with a fresh fold of the ledger (read-only), one slice of run ids",
            "parameters": _RECONCILE_PARAMS,
            "responses": {
                "200": _answer("Drift by kind, with counts and the first sample ids.", _RECONCILE),
                "400": _error("A query parameter is unknown, repeated or has a value that cannot be used."),
                "401": _error(_NO_KEY),
            },
        },
        "post": {
            "summary": "Compare one slice, and rewrite its drifted projection rows from the fold",
            "parameters": _RECONCILE_PARAMS,
            "responses": {
                "200": _answer("The drift found and how many runs were repaired.", _RECONCILE),
                "400": _error("A query parameter is unknown, repeated or has a value that cannot be used."),
                "401": _error(_NO_KEY),
            },
        },
    },
}


_RUN_PROJECT_TEXT: Final = (
    "The run of this project: runs are per project, and with API keys off one id may name runs of "
    "several; empty for the run without a project. With a key it may only repeat the key's project."
)
_RUN_PROJECT: Final = {
    "name": "project",
    "in": "query",
    "schema": {"type": "string", "pattern": "^([A-Za-z0-9][A-Za-z0-9_.-]{0,127})?$"},
    "description": _RUN_PROJECT_TEXT,
}
_AMBIGUOUS_RUN: Final = _error(
    "API keys are off and the run id is used in more than one project: name one with project=."
)
_NO_NUL_PATTERN: Final = "^[^\\u0000]*$"
"""Any text without a NUL: what the receiver takes in a path or query parameter."""
_NUL_REFUSED: Final = "A NUL character (%00) in the path or the query string: no id or filter holds one."


_STORE_CANNOT_ANSWER: Final = (
    "The store cannot answer now: its database is unreachable, locked or cannot be written; ask again after "
    "Retry-After seconds."
)
_QUERY_STOPPED: Final = (
    " Without Retry-After: the query ran past the receiver's limit for one read "
    "(FLOWLEDGER_RECEIVER_READ_TIMEOUT_S, 30 s by default) and was stopped; narrow it."
)
_TIMED_QUERIES: Final = frozenset(
    {
        "/api/runs",
        "/api/runs/{run_id}",
        "/api/runs/{run_id}/attempts/{span_id}/logs",
        "/api/diff",
        "/api/errors",
        "/api/stats",
        "/api/sampling",
        "/api/metrics/custom",
        "/api/traces/{trace_id}",
        "/api/otlp/logs",
        "/api/otlp/metrics",
        "/metrics",
    }
)
"""The documented GET routes whose reads stop at the receiver's limit for one read (``store/_deadline.py``)."""


@cache
def openapi_document() -> dict[str, Any]:
    """The whole OpenAPI document; every operation also says its 400 for a NUL anywhere in the URL."""
    document = _document()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", ()):
                schema = parameter.get("schema", {})
                if schema.get("type") == "string" and "pattern" not in schema and "enum" not in schema:
                    schema["pattern"] = _NO_NUL_PATTERN
            responses = operation.get("responses")
            if responses is None:
                continue
            if "400" in responses:
                responses["400"] = {**responses["400"]}
                responses["400"]["description"] = f"{responses['400']['description']} {_NUL_REFUSED}"
            else:
                responses["400"] = _error(_NUL_REFUSED)
            timed = method == "get" and path in _TIMED_QUERIES
            responses.setdefault("503", _error(_STORE_CANNOT_ANSWER + (_QUERY_STOPPED if timed else "")))
    return document


def _document() -> dict[str, Any]:
    json_error_responses = {
        "400": _error("The body is not a JSON object with an events list."),
        "401": _error("API keys are configured and the request has no valid one."),
        "408": _error("The body did not arrive in time."),
        "413": _error("The body, inflated body or batch is over its limit."),
        "415": _error("The Content-Encoding is not gzip or identity."),
        "503": _error("The write queue is full or the store failed: retry after Retry-After seconds."),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "flowledger receiver",
            "version": __version__,
            "description": "Ingest of workflow run events into a verifiable ledger, and queries over the runs.",
        },
        "paths": {
            **ANALYTICS_PATHS,
            "/v1/events": {
                "post": {
                    "summary": "Ingest a batch of events",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["events"],
                                    "properties": {"events": {"type": "array", "items": {}}},
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "What became of each event.",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/IngestResult"}}},
                        },
                        **json_error_responses,
                    },
                }
            },
            "/api/runs": {
                "get": {
                    "summary": "List runs, newest first",
                    "parameters": [
                        *_RUN_FILTERS,
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                        {
                            "name": "offset",
                            "in": "query",
                            "description": "Runs to skip (after the cursor, if one is given); costs grow with it.",
                            "schema": {"type": "integer", "minimum": 0, "maximum": 2**62},
                        },
                        {
                            "name": "cursor",
                            "in": "query",
                            "description": "The next of a previous answer: the page after it, as cheap at any depth. "
                            "A cursor made by a receiver before runs were ordered by project too is still taken.",
                            "schema": {"type": "string", "maxLength": CURSOR_MAX_CHARS},
                        },
                        {
                            "name": "q",
                            "in": "query",
                            "description": "Full text: runs whose errors, log lines or payload text hold every "
                            "word (a word ending in * as a prefix); text that starts a run id lists those runs. "
                            "Filter on run attributes with attr.KEY=VALUE (repeatable; values compared as text). "
                            "It needs a letter or digit to search for (a 400 otherwise).",
                            "schema": {"type": "string", "maxLength": 256, "pattern": "^[^\\u0000]*\\w[^\\u0000]*$"},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "A page of runs and the total that match.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["runs", "total"],
                                        "properties": {
                                            "runs": {"type": "array", "items": {"$ref": "#/components/schemas/Run"}},
                                            "total": {
                                                "type": "integer",
                                                "minimum": 0,
                                                "description": f"Matching runs, counted up to {TOTAL_COUNT_MAX}.",
                                            },
                                            "total_capped": {
                                                "type": "boolean",
                                                "description": "The count stopped at its cap: at least total match.",
                                            },
                                            "next": {
                                                "anyOf": [{"type": "string"}, {"type": "null"}],
                                                "description": "Pass as cursor for the next page; null on the last.",
                                            },
                                            "limit": {"type": "integer"},
                                            "offset": {"type": "integer"},
                                        },
                                    }
                                }
                            },
                        },
                        "400": _error("A query parameter is unknown, repeated or has a value that cannot be used."),
                        "401": _error("API keys are configured and the request has no valid one."),
                    },
                }
            },
            "/api/runs/{run_id}": {
                "get": {
                    "summary": "One run with its node attempts in start order",
                    "parameters": [
                        {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}},
                        _RUN_PROJECT,
                    ],
                    "responses": {
                        "200": {
                            "description": "The run.",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RunDetail"}}},
                        },
                        "400": _error("An unknown query parameter, or a project that is not the API key's."),
                        "401": _error("API keys are configured and the request has no valid one."),
                        "404": _error("No such run (or not in the key's project)."),
                        "409": _AMBIGUOUS_RUN,
                    },
                },
                "delete": {
                    "summary": "Purge one run: payloads, projection rows and spans; the purge is a ledger entry",
                    "parameters": [
                        {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}},
                        _RUN_PROJECT,
                    ],
                    "responses": {
                        "200": {
                            "description": "What was purged.",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Purge"}}},
                        },
                        "400": _error("An unknown query parameter, or a project that is not the API key's."),
                        "401": _error("API keys are configured and the request has no valid one."),
                        "404": _error("No such run (or not in the key's project)."),
                        "409": _AMBIGUOUS_RUN,
                    },
                },
            },
            "/api/runs/{run_id}/outputs": {
                "get": {
                    "summary": "What a resume reads: trigger data and each node's outcome, "
                    "complete outputs checked against the ledger",
                    "parameters": [
                        {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}},
                        _RUN_PROJECT,
                    ],
                    "responses": {
                        "200": {
                            "description": "The run (with its project, status and dry_run), the tree head and "
                            "per node its outcome, whether a dry run only simulated it, output text (null unless the "
                            "record holds it whole, captured in full or kept whole by the default capture, and "
                            "verified: its ledger row is this node's own succeeded node_finished) and the problem "
                            "that keeps it from reuse.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "400": _error("An unknown query parameter, or a project that is not the API key's."),
                        "401": _error("API keys are configured and the request has no valid one."),
                        "404": _error("No such run (or not in the key's project)."),
                        "409": _AMBIGUOUS_RUN,
                    },
                }
            },
            "/api/runs/{run_id}/chain": {
                "get": {
                    "summary": "The chain of attempts a run is part of: the original run and its resumes",
                    "parameters": [
                        {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}},
                        _RUN_PROJECT,
                    ],
                    "responses": {
                        "200": {
                            "description": "{runs: [{run_id, status, started_at, resumed_from}]}: the original, "
                            "then each resume after the run it resumes.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "400": _error("An unknown query parameter, or a project that is not the API key's."),
                        "401": _error("API keys are configured and the request has no valid one."),
                        "404": _error("No such run (or not in the key's project)."),
                        "409": _AMBIGUOUS_RUN,
                    },
                }
            },
            "/api/runs/{run_id}/resume": {
                "post": {
                    "summary": "Resume a run that did not succeed through its workflow's app "
                    "(FLOWLEDGER_RESUME_ENDPOINTS names it)",
                    "parameters": [
                        {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}},
                        _RUN_PROJECT,
                    ],
                    "responses": {
                        "200": {
                            "description": "{run_id, status} of the new run.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "400": _error("An unknown query parameter, or a project that is not the API key's."),
                        "401": _error("API keys are configured and the request has no valid one."),
                        "404": _error("No such run (or not in the key's project)."),
                        "409": _error(
                            "The run succeeded or runs, no app is configured for it, or the app refused; or API keys "
                            "are off and the run id is used in more than one project: name one with project=."
                        ),
                        "502": _error("The workflow's app could not be reached or answered without JSON."),
                    },
                }
            },
            "/api/diff": {
                "get": {
                    "summary": "Two runs compared node by node",
                    "parameters": [
                        {"name": "a", "in": "query", "required": True, "schema": {"type": "string"}},
                        {"name": "b", "in": "query", "required": True, "schema": {"type": "string"}},
                        {**_RUN_PROJECT, "description": "Both runs of this project. " + _RUN_PROJECT_TEXT},
                        *(
                            {
                                **_RUN_PROJECT,
                                "name": f"project_{run}",
                                "description": f"Run {run} of this project (instead of project). " + _RUN_PROJECT_TEXT,
                            }
                            for run in ("a", "b")
                        ),
                    ],
                    "responses": {
                        "200": {
                            "description": "Whether the runs are of the same workflow and definition (null when "
                            "either did not record one), the first divergence, nodes added and removed, and per node "
                            "the status, duration and cost deltas and structural diffs of input and output.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "400": _error(
                            "A run id is missing, repeated, a parameter is unknown, or a project is not the API key's."
                        ),
                        "401": _error("API keys are configured and the request has no valid one."),
                        "404": _error("No such run (or not in the key's project)."),
                        "409": _AMBIGUOUS_RUN,
                    },
                }
            },
            "/api/tree": {
                "get": {
                    "summary": "The ledger's Merkle tree (RFC 9162): size and root hash",
                    "responses": {
                        "200": {
                            "description": "The tree head (root in base64).",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TreeHead"}}},
                        },
                        "401": _error("API keys are configured and the request has no valid one."),
                    },
                }
            },
            "/api/tree/consistency": {
                "get": {
                    "summary": "The tree head and the consistency proof from an earlier size",
                    "parameters": [
                        {"name": "from", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 2**62}},
                    ],
                    "responses": {
                        "200": {
                            "description": "The head and the proof (base64 hashes; empty when the tree is not larger).",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TreeHead"}}},
                        },
                        "400": _error("A query parameter has a value that cannot be used."),
                        "401": _error("API keys are configured and the request has no valid one."),
                    },
                }
            },
            "/api/tree/runs/{run_id}": {
                "get": {
                    "summary": "A run's ledger entries with inclusion proofs in the tree of a given size",
                    "parameters": [
                        {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}},
                        {
                            "name": "size",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "integer", "minimum": 1, "maximum": 2**62},
                        },
                        _RUN_PROJECT,
                    ],
                    "responses": {
                        "200": {
                            "description": (
                                "The entries, each with the hash before it (`prev_hash`), payloads (null when "
                                "purged) and audit paths."
                            ),
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "400": _error(
                            "The size is missing or not a whole number, a query parameter is unknown, or a project "
                            "is not the API key's."
                        ),
                        "401": _error("API keys are configured and the request has no valid one."),
                        "404": _error(
                            "The run has no entry in that tree, the tree is smaller, or another project's run."
                        ),
                        "409": _AMBIGUOUS_RUN,
                    },
                }
            },
            "/api/runs/{run_id}/attempts/{span_id}/logs": {
                "get": {
                    "summary": "One node attempt's captured log lines, in order, a page at a time",
                    "parameters": [
                        {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}},
                        {
                            "name": "span_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
                        },
                        {"name": "level", "in": "query", "schema": {"enum": [v.value for v in LogLevel]}},
                        {
                            "name": "after",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 0, "maximum": LOG_LINE_ID_MAX},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": LOG_PAGE_MAX},
                        },
                        _RUN_PROJECT,
                    ],
                    "responses": {
                        "200": {
                            "description": "{logs: [...], dropped_lines, dropped_bytes, more}; pass the last "
                            "line's id as after= for the next page.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "400": _error("A bad span id or query parameter, or a project that is not the API key's."),
                        "401": _error("API keys are configured and the request has no valid one."),
                        "404": _error("There is no such run (or it is another project's)."),
                        "409": _AMBIGUOUS_RUN,
                    },
                }
            },
            "/api/sampling": {
                "get": {
                    "summary": "Runs the SDK dropped by sampling, per workflow",
                    "responses": {
                        "200": {
                            "description": '{"workflows": [{"workflow_id", "runs_sampled_out"}]}: runs that '
                            "succeeded fast and were dropped whole by FLOWLEDGER_SAMPLE_RATE, counted so that "
                            "statistics stay honest.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "400": _error("A query parameter was given (the route takes none)."),
                        "401": _error("API keys are configured and the request has no valid one."),
                    },
                }
            },
            "/api/purge": {
                "post": {
                    "summary": "Purge a workflow's runs, optionally only those started before a time",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "workflow_id": {"type": "string", "minLength": 1},
                                        "before": {"type": "string", "format": "date-time"},
                                    },
                                    "required": ["workflow_id"],
                                    "additionalProperties": False,
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "What was purged (possibly nothing).",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Purge"}}},
                        },
                        "400": _error("The body is not a purge request."),
                        "401": _error("API keys are configured and the request has no valid one."),
                        "413": _error("The body is too large."),
                    },
                }
            },
            "/api/metrics/custom": CUSTOM_METRICS_PATH,
            "/api/export": {
                "get": {
                    "summary": "Stream every matching run as CSV or JSONL",
                    "parameters": [
                        *_RUN_FILTERS,
                        {"name": "format", "in": "query", "schema": {"enum": [f.value for f in ExportFormat]}},
                    ],
                    "responses": {
                        "200": {
                            "description": "One line per run.",
                            "content": {
                                "text/csv": {"schema": {"type": "string"}},
                                "application/x-ndjson": {"schema": {"type": "string"}},
                            },
                        },
                        "400": _error("A query parameter is unknown, repeated or has a value that cannot be used."),
                        "401": _error("API keys are configured and the request has no valid one."),
                    },
                }
            },
            "/api/verify": {
                "get": {
                    "summary": "Walk the ledger's hash chain",
                    "parameters": [
                        {
                            "name": "checkpoint",
                            "in": "query",
                            "description": (
                                "A head printed by an earlier verify, SEQ:HASH: the row SEQ must still have this "
                                "hash. May repeat."
                            ),
                            "style": "form",
                            "explode": True,
                            "schema": {"type": "array", "items": {"type": "string", "pattern": _CHECKPOINT_PATTERN}},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "The verdict (ok false names the first bad event).",
                            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Verify"}}},
                        },
                        "400": _error("A checkpoint is not SEQ:HASH (a row number and 64 hex digits)."),
                        "401": _error("API keys are configured and the request has no valid one."),
                    },
                }
            },
            "/api/rebuild": {
                "post": {
                    "summary": "Refold the projections from the ledger and report drift",
                    "responses": {
                        "200": {
                            "description": "The drift found.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "401": _error("API keys are configured and the request has no valid one."),
                    },
                }
            },
            **_INTEGRITY_PATHS,
            **{
                f"/v1/{signal}": {
                    "post": {
                        "summary": f"OTLP/HTTP {signal}, protobuf or JSON, answered in the request's content type",
                        "requestBody": {
                            "required": True,
                            "content": {
                                "application/json": {"schema": {"type": "object"}},
                                "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
                            },
                        },
                        "responses": {
                            "200": {
                                "description": "An OTLP export response (partial_success when some were refused).",
                                "content": {
                                    "application/json": {"schema": {"type": "object"}},
                                    "application/x-protobuf": {"schema": _STR},
                                },
                            },
                            **dict.fromkeys(("400", "401", "408", "413", "415", "503"), _OTLP_ERROR),
                        },
                    }
                }
                for signal in ("traces", "logs", "metrics")
            },
            "/api/traces/{trace_id}": {
                "get": {
                    "summary": "The spans stored for one trace, parent links included",
                    "parameters": [{"name": "trace_id", "in": "path", "required": True, "schema": _TRACE_ID}],
                    "responses": {
                        "200": _answer("The trace's spans in start order.", {"type": "object"}),
                        "400": _error("The trace id is not 32 hex digits."),
                        "401": _error("API keys are configured and the request has no valid one."),
                        "404": _error("No spans of this trace are stored."),
                    },
                }
            },
            "/api/otlp/metrics": {
                "get": {
                    "summary": "Stored OTLP metric series; with name, that metric's series and their points",
                    "parameters": [
                        {"name": "name", "in": "query", "schema": {"type": "string", "maxLength": 256}},
                        {"name": "since", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                        {"name": "until", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000}},
                    ],
                    "responses": {
                        "200": _answer("The series, each with its points in time order.", {"type": "object"}),
                        "400": _error("A query parameter is not valid."),
                        "401": _error("API keys are configured and the request has no valid one."),
                    },
                }
            },
            "/api/otlp/logs": {
                "get": {
                    "summary": "OTLP log records of one run's trace or of one trace, linked to node attempts",
                    "parameters": [
                        {"name": "run_id", "in": "query", "schema": {"type": "string", "maxLength": 256}},
                        {"name": "trace_id", "in": "query", "schema": _TRACE_ID},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 10000}},
                    ],
                    "responses": {
                        "200": _answer("The records in time order.", {"type": "object"}),
                        "400": _error("A query parameter is not valid."),
                        "401": _error("API keys are configured and the request has no valid one."),
                        "404": _error("No run has this id."),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness",
                    "responses": {
                        "200": {
                            "description": "The receiver is up.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["status"],
                                        "properties": {"status": {"const": "ok"}},
                                    }
                                }
                            },
                        }
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Prometheus text format.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "401": _error("API keys are configured and the request has no valid one."),
                    },
                }
            },
        },
        "components": {
            "schemas": {
                "Error": _ERROR_BODY,
                "Run": _RUN,
                "Node": _NODE,
                "RunDetail": {
                    "allOf": [
                        {"$ref": "#/components/schemas/Run"},
                        {
                            "type": "object",
                            "required": [*_RUN_DETAIL_ONLY["required"], "nodes", "children"],
                            "properties": {
                                **_RUN_DETAIL_ONLY["properties"],
                                "nodes": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}},
                                "children": CHILDREN_SCHEMA,
                            },
                        },
                    ]
                },
                "IngestResult": {
                    "type": "object",
                    "required": ["accepted", "duplicates", "rejected"],
                    "properties": {
                        "accepted": {"type": "integer", "minimum": 0},
                        "duplicates": {"type": "integer", "minimum": 0},
                        "conflicts": {"type": "integer", "minimum": 0},
                        "rejected": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["index", "error"],
                                "properties": {"index": {"type": "integer", "minimum": 0}, "error": {"type": "string"}},
                            },
                        },
                    },
                },
                "Verify": {
                    "type": "object",
                    "required": ["ok", "events", "head_seq", "head_hash"],
                    "properties": {
                        "ok": {"type": "boolean"},
                        "events": {"type": "integer"},
                        "head_seq": {"type": "integer"},
                        "head_hash": {"type": "string"},
                        "first_bad_seq": _NINT,
                        "first_bad_event_id": _NSTR,
                        "problem": _NSTR,
                        "purges": {"type": "integer"},
                        "runs_purged": {"type": "integer"},
                        "payloads_erased": {"type": "integer"},
                    },
                },
                "TreeHead": {
                    "type": "object",
                    "required": ["size", "root"],
                    "properties": {
                        "size": {"type": "integer"},
                        "root": {"type": "string"},
                        "path": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "Purge": {
                    "type": "object",
                    "required": ["runs", "events", "purge_seq"],
                    "properties": {
                        "runs": {"type": "array", "items": {"type": "string"}},
                        "events": {"type": "integer"},
                        "purge_seq": _NINT,
                    },
                },
                **ANALYTICS_SCHEMAS,
            }
        },
    }
