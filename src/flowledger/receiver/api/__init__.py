"""The query API: run listings, one run, exports, operations (health, metrics, verify, rebuild) and OpenAPI.

The export formats themselves (``flowledger.receiver._export``) are shared with the CLI.
"""

from __future__ import annotations

from flowledger.receiver.api._openapi import openapi_document

__all__ = ["openapi_document"]
