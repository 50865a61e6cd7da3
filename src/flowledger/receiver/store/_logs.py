"""Stored log lines: the rows of the ``logs`` and ``log_drops`` tables, and their API shape.

Log lines are kept apart from the narrow ``node_runs`` rows: one row per
line (or per run of identical consecutive lines, with ``repeats``), keyed by
the run and the node attempt's span id, in arrival order (``id``). Two
sources write them:

- the SDK (``node_logs`` events, :data:`LogSource.SDK`): the projector turns
  each event into rows, so a rebuild refolds them from the ledger;
- OTLP logs (:data:`LogSource.OTLP`): the OTLP stage resolves each record's
  trace and span ids to a run and attempt and appends :class:`LogRow` values
  through ``Store.append_logs``. They are not in the ledger; a rebuild keeps
  them.

``level`` is a number on Python's scale (10 DEBUG, 20 INFO, 30 WARNING,
40 ERROR, 50 CRITICAL); :func:`level_from_severity` maps an OTLP severity
number onto it. A purge removes a run's lines and drop counts with its other
projection rows.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from flowledger.receiver.store._search import INDEX_TEXTS_SQL, LAST_TEXT_ID_SQL
from flowledger.receiver.store._time import normalize_ts

if TYPE_CHECKING:
    from flowledger.receiver.store._on_thread import WriteConnection

__all__ = [
    "LOGS_INLINE_MAX",
    "LOGS_SCHEMA",
    "LOG_COLUMNS",
    "LOG_LINE_ID_MAX",
    "LOG_PAGE_MAX",
    "LOG_SELECT",
    "AttemptLogs",
    "LogDrop",
    "LogRow",
    "LogSource",
    "append_log_rows",
    "level_from_severity",
    "log_json",
    "rows_of_event",
]

LOGS_INLINE_MAX: Final = 200
"""Lines of one attempt that ``GET /api/runs/{run_id}`` carries inline; past it the attempt links to its lines."""
LOG_PAGE_MAX: Final = 5_000
"""Most lines one read of an attempt's logs returns."""
LOG_LINE_ID_MAX: Final = 2**63 - 1
"""The largest line id (a 64-bit row id): the highest ``after`` a read of an attempt's logs takes."""


class LogSource(enum.StrEnum):
    """Where a stored log line came from."""

    SDK = "sdk"
    """Captured by the SDK from Python ``logging`` (a ``node_logs`` event in the ledger)."""
    OTLP = "otlp"
    """Received as an OTLP log record (``/v1/logs``); not in the ledger."""


LOGS_SCHEMA: Final = """
-- Log lines of node attempts, apart from the narrow rows: one row per line, or per run of identical
-- consecutive lines (repeats). level is on Python's scale (10 DEBUG .. 50 CRITICAL). span_id is the
-- attempt's span (NULL: a line of the run outside any attempt). source: 'sdk' (folded from node_logs
-- events of the ledger) or 'otlp' (received over OTLP, not in the ledger).
CREATE TABLE logs (
    id          INTEGER PRIMARY KEY,
    run_id      TEXT NOT NULL,
    span_id     TEXT,
    ts          TEXT NOT NULL,
    level       INTEGER NOT NULL,
    level_name  TEXT NOT NULL,
    logger      TEXT,
    message     TEXT NOT NULL,
    exception   TEXT,
    trace_id    TEXT,
    log_span_id TEXT,
    repeats     INTEGER NOT NULL DEFAULT 1,
    source      TEXT NOT NULL,
    attributes  TEXT,
    project     TEXT,
    event_id    TEXT
);
CREATE INDEX logs_by_attempt ON logs (run_id, span_id, id);
-- Per attempt: the lines and bytes its capture dropped past the caps ('' for the run itself).
CREATE TABLE log_drops (
    run_id  TEXT NOT NULL,
    span_id TEXT NOT NULL,
    lines   INTEGER NOT NULL,
    bytes   INTEGER NOT NULL,
    PRIMARY KEY (run_id, span_id)
) WITHOUT ROWID;
"""

LOG_COLUMNS: Final = (
    "run_id",
    "span_id",
    "ts",
    "level",
    "level_name",
    "logger",
    "message",
    "exception",
    "trace_id",
    "log_span_id",
    "repeats",
    "source",
    "attributes",
    "project",
    "event_id",
)
"""Columns of the ``logs`` table written by :func:`append_log_rows`, in :meth:`LogRow.values` order."""


@dataclass(frozen=True, slots=True)
class LogRow:
    """One stored log line (or a run of identical consecutive lines)."""

    run_id: str
    span_id: str | None
    """The node attempt's span id; None for a line of the run outside any attempt."""
    ts: str
    """RFC 3339 UTC, normalised (``YYYY-MM-DDTHH:MM:SS.ffffffZ``)."""
    level: int
    level_name: str
    logger: str | None
    message: str
    exception: str | None = None
    trace_id: str | None = None
    log_span_id: str | None = None
    """The span id the record itself carried (may differ from ``span_id`` for a child span's line)."""
    repeats: int = 1
    source: LogSource = LogSource.SDK
    attributes: str | None = None
    """JSON object text, or None."""
    project: str | None = None
    event_id: str | None = None
    """The ledger event that carried the line (SDK lines)."""

    def values(self) -> tuple[Any, ...]:
        """The row's values in LOG_COLUMNS order."""
        return tuple(getattr(self, name) for name in LOG_COLUMNS)


@dataclass(frozen=True, slots=True)
class LogDrop:
    """What one attempt's capture dropped past its caps."""

    run_id: str
    span_id: str | None
    lines: int
    bytes: int
    project: str | None = None


@dataclass(slots=True)
class AttemptLogs:
    """A page of one attempt's log lines, and what its capture dropped."""

    lines: list[dict[str, Any]]
    """Lines as :func:`log_json` shows them, in arrival order."""
    dropped_lines: int = 0
    dropped_bytes: int = 0
    more: bool = False
    """Whether lines past this page match too (ask again with ``after_id`` = the last line's ``id``)."""

    def as_json(self) -> dict[str, Any]:
        """The page as the API answers it."""
        return {
            "logs": self.lines,
            "dropped_lines": self.dropped_lines,
            "dropped_bytes": self.dropped_bytes,
            "more": self.more,
        }


_INSERT_LOGS: Final = f"INSERT INTO logs ({', '.join(LOG_COLUMNS)})"
_INSERT_DROPS: Final = "INSERT INTO log_drops (run_id, span_id, lines, bytes, project)"
_DROPS_TAIL: Final = (
    " ON CONFLICT (run_id, ifnull(project, ''), span_id) DO UPDATE SET lines = lines + excluded.lines, "
    "bytes = bytes + excluded.bytes"
)

_SEVERITY_LEVELS: Final = ((21, 50), (17, 40), (13, 30), (9, 20), (5, 10), (1, 5))


def level_from_severity(severity_number: int) -> int:
    """An OTLP severity number (1-24) on Python's level scale (FATAL 50, ERROR 40, WARN 30, INFO 20, DEBUG 10, TRACE 5).

    0 (unspecified) and anything out of range is 0.
    """
    if severity_number > 24:
        return 0
    for lowest, level in _SEVERITY_LEVELS:
        if severity_number >= lowest:
            return level
    return 0


def rows_of_event(
    *, run_id: str, event_id: str, project: str | None, data: dict[str, Any]
) -> tuple[list[LogRow], LogDrop | None]:
    """The rows and the drop count a ``node_logs`` event's data holds (validated against the wire schema)."""
    span_id = data.get("span_id")
    rows = [
        LogRow(
            run_id=run_id,
            span_id=span_id,
            ts=normalize_ts(record["ts"]),
            level=record["level"],
            level_name=record.get("level_name") or "",
            logger=record.get("logger"),
            message=record["message"],
            exception=record.get("exception"),
            trace_id=record.get("trace_id") or data.get("trace_id"),
            log_span_id=record.get("span_id"),
            repeats=record.get("repeats", 1),
            source=LogSource.SDK,
            project=project,
            event_id=event_id,
        )
        for record in data.get("records", ())
    ]
    lines, size = data.get("dropped_lines", 0), data.get("dropped_bytes", 0)
    drop = LogDrop(run_id, span_id, lines, size, project) if lines or size else None
    return rows, drop


async def append_log_rows(conn: WriteConnection, rows: Sequence[LogRow], drops: Sequence[LogDrop] = ()) -> None:
    """Insert log rows and add drop counts (inside the caller's transaction)."""
    from flowledger.receiver.store._bulk import insert_rows  # the database driver only when writing

    if rows:  # a trigger copies each line's text into search_text; it is indexed here, in one statement
        (last,) = next(iter(await conn.execute_fetchall(LAST_TEXT_ID_SQL)))
        await insert_rows(conn, _INSERT_LOGS, [row.values() for row in rows], width=len(LOG_COLUMNS))
        await conn.execute(INDEX_TEXTS_SQL, (last,))
    if drops:
        values = [(d.run_id, d.span_id or "", d.lines, d.bytes, d.project) for d in drops]
        await insert_rows(conn, _INSERT_DROPS, values, width=5, tail=_DROPS_TAIL)


LOG_SELECT: Final = (
    "SELECT id, span_id, ts, level, level_name, logger, message, exception, trace_id, log_span_id, repeats, "
    "source, attributes FROM logs"
)
"""The columns :func:`log_json` reads, in its order."""


def log_json(row: Sequence[Any]) -> dict[str, Any]:
    """One stored line as the API shows it (a row selected with LOG_SELECT)."""
    line: dict[str, Any] = {
        "id": row[0],
        "ts": row[2],
        "level": row[4] or str(row[3]),
        "levelno": row[3],
        "logger": row[5],
        "message": row[6],
        "source": row[11],
    }
    if row[7] is not None:
        line["exception"] = row[7]
    if row[8] is not None:
        line["trace_id"] = row[8]
    if row[9] is not None:
        line["span_id"] = row[9]
    if row[10] != 1:
        line["repeats"] = row[10]
    if row[12] is not None:
        line["attributes"] = json.loads(row[12])
    return line
