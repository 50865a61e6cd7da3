"""CSV and JSONL renderings of runs, one line at a time (for streaming).

Shared by the API's ``/api/export`` and the CLI's ``export --db``.

A CSV export is opened in spreadsheets, and a run's text fields (workflow
names, error messages) come from the producers. So that no cell is read as a
formula (CSV injection), a text cell starting with ``=``, ``+``, ``-``, ``@``,
a tab or a carriage return is written with a leading apostrophe ``'``
(spreadsheets show it as text and hide the apostrophe), and a NUL character
in any text cell is written as U+FFFD. Numbers are written as numbers. Lines
end with CRLF (RFC 4180), and a cell holding a line break is quoted. JSONL is
exact: nothing is changed there.
"""

from __future__ import annotations

import csv
import enum
import io
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Final

from flowledger.receiver.store._records import RUN_FIELDS, csv_columns, csv_values

__all__ = [
    "CELL_GUARD",
    "CSV_COLUMNS",
    "FORMULA_PREFIXES",
    "MEDIA_TYPES",
    "NUL_STANDIN",
    "ExportFormat",
    "csv_header",
    "csv_line",
    "export_lines",
    "jsonl_line",
    "safe_cell",
]


class ExportFormat(enum.StrEnum):
    """What ``flowledger export`` writes."""

    CSV = "csv"
    JSONL = "jsonl"


MEDIA_TYPES: Final = {ExportFormat.CSV: "text/csv; charset=utf-8", ExportFormat.JSONL: "application/x-ndjson"}
"""The media type ``GET /api/export`` answers in each format (the CLI checks it on the answers it reads)."""


CSV_COLUMNS: Final = csv_columns(RUN_FIELDS)
"""One row per run: the exported fields of a run, ``error`` and ``cost`` flattened."""
FORMULA_PREFIXES: Final = ("=", "+", "-", "@", "\t", "\r")
"""A text cell starting with one of these is written with a leading apostrophe."""
CELL_GUARD: Final = "'"
NUL_STANDIN: Final = "\ufffd"
"""What a NUL character in a text cell is written as."""


def safe_cell(value: Any) -> Any:
    """A CSV cell that no spreadsheet reads as a formula and that holds no NUL; non-text values unchanged."""
    if not isinstance(value, str):
        return value
    text = value.replace("\0", NUL_STANDIN)
    return CELL_GUARD + text if text.startswith(FORMULA_PREFIXES) else text


def _flat(run: dict[str, Any]) -> list[Any]:
    return [safe_cell(value) for value in csv_values(RUN_FIELDS, run)]


def _csv_text(row: list[Any]) -> str:
    out = io.StringIO()
    # RFC 4180 line ends: the writer then quotes a cell holding a carriage return too (with "\n" it did not).
    csv.writer(out, lineterminator="\r\n").writerow(row)
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
