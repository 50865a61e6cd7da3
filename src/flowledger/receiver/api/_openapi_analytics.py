"""The OpenAPI description of the analytics routes (``/api/errors``, ``/api/stats``), merged into the document."""

from __future__ import annotations

from typing import Any, Final

from flowledger.receiver.api._routes_analytics import MAX_ERROR_GROUPS, MAX_STATS_GROUPS
from flowledger.receiver.store._stats import Bucket, StatsBy

__all__ = ["ANALYTICS_PATHS", "ANALYTICS_SCHEMAS"]

_NSTR: Final = {"anyOf": [{"type": "string"}, {"type": "null"}]}
_ERROR_REF: Final = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_TIME_RANGE: Final = [
    {
        "name": "since",
        "in": "query",
        "description": "RFC 3339 time with an offset: from the UTC hour holding it on.",
        "schema": {"type": "string", "format": "date-time"},
    },
    {
        "name": "until",
        "in": "query",
        "description": "RFC 3339 time with an offset: UTC hours that start before it.",
        "schema": {"type": "string", "format": "date-time"},
    },
]

_NNUM: Final = {"anyOf": [{"type": "number"}, {"type": "null"}]}
_FIGURES: Final = {
    "runs": {"type": "integer", "description": "Finished runs (by=node: finished attempts)."},
    "by_status": {"type": "object", "additionalProperties": {"type": "integer"}},
    "success_rate": _NNUM,
    "cost_usd": {
        "type": "object",
        "required": ["total", "avg", "min", "max"],
        "properties": {"total": {"type": "number"}, "avg": _NNUM, "min": _NNUM, "max": _NNUM},
    },
    "duration_ms": {
        "type": "object",
        "required": ["avg", "p50", "p95"],
        "properties": {"avg": _NNUM, "p50": _NNUM, "p95": _NNUM},
        "description": (
            "avg exact (durations summed in microseconds). p50 and p95 from a histogram of log-scale bins 2 % wide: "
            "the bin's geometric middle, clamped to the range's min and max, within 0.995 % (sqrt(1.02) - 1) of the "
            "exact nearest-rank percentile for durations from 1 microsecond to 1e10 ms; zero durations exact."
        ),
    },
}

ANALYTICS_SCHEMAS: Final[dict[str, Any]] = {
    "StatsGroup": {
        "type": "object",
        "required": ["key", "runs", "by_status", "success_rate", "cost_usd", "duration_ms"],
        "properties": {
            "key": {"type": "string", "description": "The workflow, agent or project ('' for none), or workflow/node."},
            **_FIGURES,
            "series": {
                "type": "array",
                "description": "With bucket: one entry per hour or day that has runs, oldest first.",
                "items": {
                    "type": "object",
                    "required": ["start", "runs", "by_status", "success_rate", "cost_usd", "duration_ms"],
                    "properties": {"start": {"type": "string"}, **_FIGURES},
                },
            },
        },
    },
    "ErrorGroup": {
        "type": "object",
        "required": [
            "fingerprint",
            "type",
            "message",
            "node_id",
            "workflow_id",
            "count",
            "first_seen",
            "last_seen",
            "sample_run_ids",
            "sample_runs",
        ],
        "properties": {
            "fingerprint": {"type": "string", "description": "16 hex digits naming the group."},
            "type": {"type": "string"},
            "message": {"type": "string", "description": "Normalised: varying values replaced by placeholders."},
            "node_id": _NSTR,
            "workflow_id": _NSTR,
            "count": {"type": "integer", "minimum": 1},
            "first_seen": {"type": "string"},
            "last_seen": {"type": "string"},
            "sample_run_ids": {
                "type": "array",
                "items": {"type": "string"},
                "maxItems": 5,
                "description": "The ids of sample_runs, in the same order. A run is (project, run_id): with API keys "
                "off an id may stand for runs of several projects (and appear twice); sample_runs says which.",
            },
            "sample_runs": {
                "type": "array",
                "maxItems": 5,
                "description": "The group's most recent failed runs, newest first, each with its project (null: "
                "none), so that a run id several projects use names one run (GET /api/runs/{run_id}?project=).",
                "items": {
                    "type": "object",
                    "required": ["run_id", "project"],
                    "properties": {"run_id": {"type": "string"}, "project": _NSTR},
                },
            },
        },
    },
}

ANALYTICS_PATHS: Final[dict[str, Any]] = {
    "/api/stats": {
        "get": {
            "summary": "Statistics per workflow, agent, project or node",
            "parameters": [
                {"name": "by", "in": "query", "schema": {"enum": [b.value for b in StatsBy]}},
                *_TIME_RANGE,
                {
                    "name": "bucket",
                    "in": "query",
                    "description": "Add a time series in buckets of an hour or a day.",
                    "schema": {"enum": [b.value for b in Bucket]},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_STATS_GROUPS},
                },
            ],
            "responses": {
                "200": {
                    "description": "The groups, most runs first.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["groups"],
                                "properties": {
                                    "groups": {"type": "array", "items": {"$ref": "#/components/schemas/StatsGroup"}}
                                },
                            }
                        }
                    },
                },
                "400": {"description": "A query parameter is unknown, repeated or unusable.", **_ERROR_REF},
                "401": {"description": "API keys are configured and the request has no valid one.", **_ERROR_REF},
            },
        }
    },
    "/api/errors": {
        "get": {
            "summary": "Error groups, biggest first",
            "parameters": [
                {"name": "workflow_id", "in": "query", "schema": {"type": "string", "maxLength": 256}},
                *_TIME_RANGE,
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ERROR_GROUPS},
                },
            ],
            "responses": {
                "200": {
                    "description": "The groups.",
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["groups"],
                                "properties": {
                                    "groups": {"type": "array", "items": {"$ref": "#/components/schemas/ErrorGroup"}}
                                },
                            }
                        }
                    },
                },
                "400": {"description": "A query parameter is unknown, repeated or unusable.", **_ERROR_REF},
                "401": {"description": "API keys are configured and the request has no valid one.", **_ERROR_REF},
            },
        }
    },
}
