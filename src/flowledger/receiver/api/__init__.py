"""The query API: run listings, one run, exports, operations (health, metrics, verify, rebuild) and OpenAPI."""

from __future__ import annotations

from flowledger.receiver.api._export import ExportFormat, export_lines
from flowledger.receiver.api._openapi import openapi_document
from flowledger.receiver.api._trace_url import add_trace_url, trace_url

__all__ = ["ExportFormat", "add_trace_url", "export_lines", "openapi_document", "trace_url"]
