"""The query API: run listings, one run, exports, operations (health, metrics, verify, rebuild) and OpenAPI."""

from __future__ import annotations

from flowledger.receiver.api._export import ExportFormat, export_lines
from flowledger.receiver.api._openapi import openapi_document

__all__ = ["ExportFormat", "export_lines", "openapi_document"]
