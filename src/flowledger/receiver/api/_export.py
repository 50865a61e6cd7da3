"""CSV and JSONL renderings of runs, one line at a time (for streaming)."""

from __future__ import annotations

import csv
import enum
import io
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Final

__all__ = ["CSV_COLUMNS", "ExportFormat", "csv_header", "csv_line", "export_lines", "jsonl_line"]


class ExportFormat(enum.StrEnum):
    """What ``flowledger export`` writes."""

    CSV = "csv"
    JSONL = "jsonl"


CSV_COLUMNS: Final = (
    "run_id",
    "workflow_id",
    "workflow_name",
    "workflow_version",
    "status",
    "trigger_type",
    "dry_run",
    "started_at",
    "completed_at",
    "duration_ms",
    "error_type",
    "error_message",
    "error_node_id",
    "cost_tokens",
    "cost_tool_calls",
    "cost_external_requests",
    "cost_usd",
    "trace_id",
)
"""One row per run; ``error`` and ``cost`` are flattened."""


def _flat(run: dict[str, Any]) -> list[Any]:
    error = run.get("error") or {}
    cost = run.get("cost") or {}
    values = {
        **run,
        "error_type": error.get("type"),
        "error_message": error.get("message"),
        "error_node_id": error.get("node_id"),
        "cost_tokens": cost.get("tokens"),
        "cost_tool_calls": cost.get("tool_calls"),
        "cost_external_requests": cost.get("external_requests"),
        "cost_usd": cost.get("usd"),
    }
    return ["" if values.get(c) is None else values.get(c) for c in CSV_COLUMNS]


def _csv_text(row: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(row)
    return out.getvalue()


def csv_header() -> str:
    """The CSV header line."""
    return _csv_text(list(CSV_COLUMNS))


def csv_line(run: dict[str, Any]) -> str:
    """One run as a CSV line."""
    return _csv_text(_flat(run))


def jsonl_line(run: dict[str, Any]) -> str:
    """One run (with its nodes, when present) as a JSON line."""
    return json.dumps(run, ensure_ascii=False, separators=(",", ":")) + "\n"


async def export_lines(runs: AsyncIterator[dict[str, Any]], fmt: ExportFormat) -> AsyncGenerator[str, None]:
    """Render runs one line at a time."""
    if fmt is ExportFormat.CSV:
        yield csv_header()
        async for run in runs:
            yield csv_line(run)
    else:
        async for run in runs:
            yield jsonl_line(run)
