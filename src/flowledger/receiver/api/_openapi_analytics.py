"""The OpenAPI description of the analytics routes (``/api/errors``), merged into the document."""

from __future__ import annotations

from typing import Any, Final

from flowledger.receiver.api._routes_analytics import MAX_ERROR_GROUPS

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

ANALYTICS_SCHEMAS: Final[dict[str, Any]] = {
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
            "sample_run_ids": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
        },
    },
}

ANALYTICS_PATHS: Final[dict[str, Any]] = {
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
