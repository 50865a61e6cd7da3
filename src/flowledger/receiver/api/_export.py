"""CSV and JSONL renderings of runs, one line at a time (for streaming)."""

from __future__ import annotations

import csv
import enum
import io
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Final

from flowledger.receiver.store._records import RUN_FIELDS, csv_columns, csv_values

__all__ = ["CSV_COLUMNS", "ExportFormat", "csv_header", "csv_line", "export_lines", "jsonl_line"]


class ExportFormat(enum.StrEnum):
    """What ``flowledger export`` writes."""

    CSV = "csv"
    JSONL = "jsonl"


CSV_COLUMNS: Final = csv_columns(RUN_FIELDS)
"""One row per run: the exported fields of a run, ``error`` and ``cost`` flattened."""


def _flat(run: dict[str, Any]) -> list[Any]:
    return csv_values(RUN_FIELDS, run)


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
