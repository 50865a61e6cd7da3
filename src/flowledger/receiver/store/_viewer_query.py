"""Read-only SQL of the history viewer, beyond ``GET /api/runs`` and ``GET /api/runs/{run_id}``.

Every function takes a plain read-only :class:`sqlite3.Connection` (see
:func:`open_reader`) and runs synchronously; :class:`~flowledger.receiver.store._sqlite.SqliteStore`
calls them in a worker thread to answer the viewer's methods of the ``Store``
protocol. The queries lean on the receiver's indexes:

* run listings are keyset-paged on ``(started_at, run_id)`` newest first, so
  the thousandth page costs what the first does, with one index per filter
  (workflow, status, trigger, dry run; a time range is a range of the same
  index; a run-id search is a range of the primary key);
* a run's node attempts are paged in start order through
  ``node_runs_by_start``, so a 10,000-attempt run opens without reading every
  attempt, and payloads are read one attempt at a time, large ones only when
  asked for.

Run and node-attempt JSON reuse :func:`~flowledger.receiver.store._query.run_json`
and :func:`~flowledger.receiver.store._query.node_json`, so the viewer shows the
same fields as the query API.
"""

from __future__ import annotations

import enum
import json
import math
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from flowledger._exceptions import QueryError
from flowledger._money import NANOS_PER_USD, nanos_to_usd
from flowledger._wire import NodeStatus, RunStatus, TriggerType
from flowledger.receiver.store._children import children_json, children_sql
from flowledger.receiver.store._namespace import NAMESPACES_SQL, one_namespace, run_scope
from flowledger.receiver.store._query import (
    NEWEST_FIRST,
    NODE_SELECT,
    OLDEST_FIRST,
    RUN_PAYLOADS_SELECT,
    RUN_SELECT,
    node_json,
    page_branches,
    run_json,
)
from flowledger.receiver.store._records import (
    NODE_FIELDS,
    RUN_FIELDS,
    ColumnsByName,
    FieldKind,
    RecordField,
    detail_fields,
    field_value,
    record_json,
    select_list,
)
from flowledger.receiver.store._search import search_clause
from flowledger.receiver.store._time import epoch_s
from flowledger.receiver.store._views import (
    INLINE_PAYLOAD_MAX_CHARS,
    PERCENTILE_SAMPLE_MAX,
    RUN_ID_SEARCH_MAX_MATCHES,
    RUN_PAYLOAD_KINDS,
    PageDirection,
    PayloadKind,
    RunFilter,
    RunListPage,
    RunMode,
    RunPageCursor,
)

__all__ = [
    "ATTEMPT_SELECT",
    "FACET_WORKFLOWS_MAX",
    "FINISHED_STATUSES",
    "PAYLOAD_COLUMNS",
    "attempt_detail",
    "attempt_row",
    "attempts_overview",
    "attempts_page",
    "concurrency_strip",
    "cost_nanos",
    "facets",
    "filter_where",
    "inline_payload",
    "ledger_size",
    "node_payload",
    "open_reader",
    "payload_size",
    "recent_workflows",
    "run_header",
    "run_payload",
    "run_summary",
    "viewer_runs",
]

CONCURRENCY_BUCKETS: Final = 120
"""Columns of a run's concurrency strip."""
READER_BUSY_TIMEOUT_MS: Final = 5_000
"""How long a viewer query waits for a locked database."""
ERROR_PREVIEW_CHARS: Final = 300
"""How much of an error message an attempt row of a page carries (the node panel has all of it)."""
FINISHED_STATUSES: Final = (RunStatus.SUCCEEDED.value, RunStatus.FAILED.value, RunStatus.ABORTED.value)
_EPOCH_S: Final = "(CAST(strftime('%s', substr({0}, 1, 19)) AS INTEGER) + CAST(substr({0}, 20, 7) AS REAL))"
"""Seconds since the epoch of a stored timestamp: its whole seconds, then its fraction read from the text.
``julianday`` of the whole text would round ``23:59:59.999999`` of 9999-12-31 to the year 10000, which it
answers with NULL."""
_ATTEMPT_ORDER: Final = "ORDER BY n.started_at, n.attempt, n.item, n.span_id"
_DOLLARS_SPLIT: Final = 1_000_000_000
"""Whole dollars are summed as their billions and the dollars below a billion: neither sum can overflow."""
_WHOLE_USD: Final = "coalesce(CAST(r.cost_usd AS INTEGER), 0)"
_REST_NANOS: Final = "coalesce(CAST(round((r.cost_usd - CAST(r.cost_usd AS INTEGER)) * 1e9) AS INTEGER), 0)"
_SUM_USD: Final = f"sum({_WHOLE_USD} / {_DOLLARS_SPLIT}), sum({_WHOLE_USD} % {_DOLLARS_SPLIT}), sum({_REST_NANOS})"
"""The exact sum of runs' costs as three sums of integers that cannot overflow (put together by
:func:`cost_nanos`): the billions of each run's whole dollars, the rest of them (a cost is at most 2**53 USD),
and its nano-dollars below the whole dollars (``round`` is half up, as PostgreSQL's ``floor(x + 0.5)``). One sum
of nano-dollars would not do: a single run's pass 2**63 from 9.2 billion USD on, where SQLite's integers stop."""
_KEPT_SUM_USD: Final = (
    f"sum(cost_usd_whole / {_DOLLARS_SPLIT}), "
    f"sum(CASE WHEN typeof(cost_usd_whole) = 'integer' THEN cost_usd_whole % {_DOLLARS_SPLIT} ELSE 0 END), "
    "sum(cost_usd_rest_nanos)"
)
""":data:`_SUM_USD` over ``run_counts``: a row's whole dollars past 2**63 (a thousand runs of 2**53 USD) are the
nearest float, SQLite's own ``+``; all of it counts among the billions."""
PAYLOAD_COLUMNS: Final = {
    PayloadKind.INPUT: "input_json",
    PayloadKind.OUTPUT: "output_json",
    PayloadKind.ERROR_STACK: "error_stack",
}
"""The result column of each payload kind, in node and run rows alike."""
_NODE: Final = {f.name: f for f in NODE_FIELDS}
_ATTEMPT_ROW_FIELDS: Final = (
    *(_NODE[name] for name in ("node_id", "attempt", "item", "status", "skip_reason", "started_at")),
    *(_NODE[name] for name in ("completed_at", "duration_ms")),
    RecordField(
        name="error",
        schema={},
        description="The attempt's error without its stack, the message cut to ERROR_PREVIEW_CHARS.",
        kind=FieldKind.OBJECT,
        columns=("error_type", "error_preview"),
        parts=("type", "message"),
    ),
    *(_NODE[name] for name in ("span_id", "effect", "simulated", "duplicate", "location")),
    RecordField(name="cost_usd", schema={}, description="The attempt's cost in US dollars."),
)
"""A row of a page of attempts: node fields without payloads, a short error, the cost in dollars only."""
ATTEMPT_SELECT: Final = select_list(
    _ATTEMPT_ROW_FIELDS, "n", {"error_preview": f"substr(n.error_message, 1, {ERROR_PREVIEW_CHARS})"}
)


@contextmanager
def open_reader(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the database file, closed on exit."""
    uri = path.resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=READER_BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {READER_BUSY_TIMEOUT_MS}")
        conn.row_factory = sqlite3.Row  # queries read columns by name
        yield conn
    finally:
        conn.close()


def _equalities(run_filter: RunFilter, prefix: str) -> tuple[list[str], list[Any]]:
    """The filter's equality conditions (workflow, status, trigger, project, mode), columns prefixed by ``prefix``."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("workflow_id", run_filter.workflow_id),
        ("status", run_filter.status),
        ("trigger_type", run_filter.trigger),
        ("project", run_filter.project),
    ):
        if value is not None:
            clauses.append(f"{prefix}{column} = ?")
            params.append(str(value))
    if run_filter.mode is not None:
        clauses.append(f"{prefix}dry_run = ?")
        params.append(1 if run_filter.mode is RunMode.DRY else 0)
    return clauses, params


def filter_where(run_filter: RunFilter) -> tuple[str, list[Any]]:
    """SQL conditions of a filter on ``runs r`` (joined with AND; ``1`` when there are none) and their parameters."""
    clauses, params = _equalities(run_filter, "r.")
    context_clauses, context_params = run_filter.context.conditions("r.")
    clauses += context_clauses
    params += context_params
    if run_filter.since is not None:
        clauses.append("r.started_at >= ?")
        params.append(run_filter.since)
    if run_filter.until is not None:
        clauses.append("r.started_at < ?")
        params.append(run_filter.until)
    if run_filter.run_id_prefix:
        # A range of the primary key: "0190ab" matches every id that starts with it.
        clauses.append("r.run_id >= ? AND r.run_id < ?")
        params += [run_filter.run_id_prefix, run_filter.run_id_prefix + "\U0010ffff"]
    if run_filter.text:
        clause, clause_params = search_clause(run_filter.text)
        clauses.append(clause)
        params += clause_params
    return (" AND ".join(clauses) or "1"), params


def _resolve_search(conn: sqlite3.Connection, run_filter: RunFilter) -> RunFilter:
    """A search that could be a run id or text: the id when a run has it, else the text; then check the id search."""
    if run_filter.run_id_prefix and run_filter.text:
        prefix = run_filter.run_id_prefix
        found = conn.execute(
            "SELECT 1 FROM runs WHERE run_id >= ? AND run_id < ? AND (? IS NULL OR project = ?) LIMIT 1",
            (prefix, prefix + "\U0010ffff", run_filter.project, run_filter.project),
        ).fetchone()
        run_filter = replace(run_filter, text=None) if found else replace(run_filter, run_id_prefix=None)
    _check_search(conn, run_filter)
    return run_filter


def _check_search(conn: sqlite3.Connection, run_filter: RunFilter) -> None:
    """Refuse a run-id search that matches more than RUN_ID_SEARCH_MAX_MATCHES runs (a range of the primary key).

    Only the filter's project's runs count (an API key's): another project's runs under the prefix are neither
    refused for nor revealed by their number. Its namespace is the run-id index's second column, read there.
    """
    prefix = run_filter.run_id_prefix
    if not prefix:
        return
    mine = "" if run_filter.project is None else " AND ifnull(project, '') = ?"
    row = conn.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM runs WHERE run_id >= ? AND run_id < ?{mine} LIMIT ?)",
        (
            prefix,
            prefix + "\U0010ffff",
            *(() if run_filter.project is None else (run_filter.project,)),
            RUN_ID_SEARCH_MAX_MATCHES + 1,
        ),
    ).fetchone()
    if int(row[0]) > RUN_ID_SEARCH_MAX_MATCHES:
        raise QueryError(
            f"the search {prefix[:40]!r} matches more than {RUN_ID_SEARCH_MAX_MATCHES:,} runs; type more of the run id"
        )


def ledger_size(conn: sqlite3.Connection) -> int:
    """The last ledger row's sequence number (0 when empty)."""
    return int(conn.execute("SELECT coalesce(max(seq), 0) FROM ledger").fetchone()[0])


def _exists(conn: sqlite3.Connection, where: str, params: Sequence[Any]) -> bool:
    row = conn.execute(f"SELECT EXISTS (SELECT 1 FROM runs r WHERE {where})", params).fetchone()
    return bool(row[0])


def viewer_runs(
    conn: sqlite3.Connection,
    run_filter: RunFilter,
    *,
    limit: int,
    cursor: RunPageCursor | None = None,
    direction: PageDirection = PageDirection.OLDER,
) -> RunListPage:
    """A page of ``limit`` runs next to ``cursor`` (the newest runs without one), newest first."""
    run_filter = _resolve_search(conn, run_filter)
    base_where, base_params = filter_where(run_filter)
    order = OLDEST_FIRST if cursor is not None and direction is PageDirection.NEWER else NEWEST_FIRST
    branches = [("TRUE", [])] if cursor is None else page_branches(cursor, newer=direction is PageDirection.NEWER)
    rows: list[Any] = []
    for clause, clause_params in branches:  # each a range of an index, read in order until the page is full
        # The inner query reads only indexed columns (a covering index scan); the outer one fetches the rows.
        sql = (
            f"SELECT {RUN_SELECT} FROM runs r WHERE r.rowid IN "
            f"(SELECT r.rowid FROM runs r WHERE {base_where} AND {clause} {order} LIMIT ?) {order}"
        )
        rows += conn.execute(sql, [*base_params, *clause_params, limit + 1 - len(rows)]).fetchall()
        if len(rows) > limit:
            break
    more = len(rows) > limit
    runs = [run_json(row) for row in rows[:limit]]
    if cursor is None:
        return RunListPage(runs, RunPageCursor.of(runs[-1]) if more else None, None)
    if direction is PageDirection.NEWER:
        if not more:
            # Fewer newer runs than a page: this is the first page, shown whole.
            return viewer_runs(conn, run_filter, limit=limit)
        runs.reverse()
    if not runs:
        return RunListPage([], None, None)
    first, last = RunPageCursor.of(runs[0]), RunPageCursor.of(runs[-1])
    if direction is PageDirection.OLDER:
        has_older = more
        has_newer = any(
            _exists(conn, f"{base_where} AND {clause}", [*base_params, *clause_params])
            for clause, clause_params in page_branches(first, newer=True)
        )
    else:
        has_newer = True
        has_older = any(
            _exists(conn, f"{base_where} AND {clause}", [*base_params, *clause_params])
            for clause, clause_params in page_branches(last)
        )
    return RunListPage(runs, last if has_older else None, first if has_newer else None)


def _percentiles(conn: sqlite3.Connection, where: str, params: Sequence[Any], sample_max: int) -> tuple[Any, Any, int]:
    """Nearest-rank p50 and p95 of the durations of the newest ``sample_max`` matching runs, and the sample size."""
    durations = sorted(
        row[0]
        for row in conn.execute(
            f"SELECT r.duration_ms FROM runs r WHERE {where} AND r.duration_ms IS NOT NULL {NEWEST_FIRST} LIMIT ?",
            [*params, sample_max],
        )
    )
    if not durations:
        return None, None, 0

    def rank(fraction: float) -> Any:
        return durations[max(0, math.ceil(len(durations) * fraction) - 1)]

    return rank(0.5), rank(0.95), len(durations)


def run_summary(
    conn: sqlite3.Connection, run_filter: RunFilter, *, percentile_sample_max: int = PERCENTILE_SAMPLE_MAX
) -> dict[str, Any]:
    """The summary cards over every run the filter matches.

    Counts and cost cover every matching run (read from ``run_counts``, or with a time range or a
    search from one scan of ``runs_facts``); the cost is an exact sum of nano-dollars
    (``total_cost_usd_nanos``, and ``total_cost_usd`` the float that prints as it).
    ``success_rate`` is succeeded over finished (succeeded, failed, aborted)
    runs. p50 and p95 are nearest-rank percentiles of the durations of the
    newest ``percentile_sample_max`` matching runs that have one: exact
    whenever fewer runs match; ``duration_sample`` says how many were used
    and ``duration_sample_capped`` whether the cap was reached.
    """
    run_filter = _resolve_search(conn, run_filter)
    where, params = filter_where(run_filter)
    by_status = dict.fromkeys((s.value for s in RunStatus), 0)
    dry = live = 0
    cost = 0
    for status, dry_run, count, billions, dollars, rest_nanos in _counts(conn, run_filter, where, params):
        by_status[status] = by_status.get(status, 0) + count
        if dry_run == 1:
            dry += count
        else:
            live += count
        cost += cost_nanos(billions, dollars, rest_nanos)
    finished = sum(by_status[s] for s in FINISHED_STATUSES)
    last = conn.execute(
        f"SELECT r.run_id, r.started_at, r.status, r.project FROM runs r WHERE {where} {NEWEST_FIRST} LIMIT 1", params
    ).fetchone()
    p50, p95, sample = _percentiles(conn, where, params, percentile_sample_max)
    return {
        "total": sum(by_status.values()),
        "by_status": by_status,
        "dry_run": dry,
        "live": live,
        "success_rate": None if not finished else by_status[RunStatus.SUCCEEDED.value] / finished,
        "p50_duration_ms": p50,
        "p95_duration_ms": p95,
        "duration_sample": sample,
        "duration_sample_capped": sample >= percentile_sample_max,
        "total_cost_usd": nanos_to_usd(cost),
        "total_cost_usd_nanos": cost,
        "last_run": None
        if last is None
        else {"run_id": last[0], "started_at": last[1], "status": last[2], "project": last[3]},
    }


def cost_nanos(billions: float, dollars: int, rest_nanos: int) -> int:
    """The nano-dollars of a sum of costs kept as billions of dollars (a float once past 2**63), dollars and
    nano-dollars: exact in Python's integers."""
    return int(billions * _DOLLARS_SPLIT + dollars) * NANOS_PER_USD + rest_nanos


def _counts(
    conn: sqlite3.Connection, run_filter: RunFilter, where: str, params: Sequence[Any]
) -> list[tuple[str, int | None, int, float, int, int]]:
    """Runs and cost (as :func:`cost_nanos` takes it) per (status, dry_run) over the filter.

    Without a time range, a search or a run-context filter they are read from ``run_counts`` (kept by
    triggers on ``runs``): a few hundred rows whatever the number of runs. Otherwise one scan of the
    covering ``runs_facts`` over the range, or of the filter's own index (a search matches at most
    RUN_ID_SEARCH_MAX_MATCHES runs).
    """
    if (
        run_filter.since is None
        and run_filter.until is None
        and not run_filter.run_id_prefix
        and not run_filter.text
        and not run_filter.context
    ):
        equal, values = _equalities(run_filter, "")
        clauses = ["1", *equal]
        sql = (
            f"SELECT status, dry_run, sum(runs), {_KEPT_SUM_USD} FROM run_counts "
            f"WHERE {' AND '.join(clauses)} GROUP BY status, dry_run HAVING sum(runs) > 0"
        )
        return [tuple(row) for row in conn.execute(sql, values)]
    # "+r.status": keep the planner from walking runs_by_status for the grouping (a table lookup per run);
    # scanning the covering runs_facts index instead reads nothing else.
    sql = f"SELECT r.status, r.dry_run, count(*), {_SUM_USD} FROM runs r WHERE {where} GROUP BY +r.status, +r.dry_run"
    return [tuple(row) for row in conn.execute(sql, params)]


FACET_WORKFLOWS_MAX: Final = 500
"""Workflows ``GET /api/viewer/facets`` lists at most: those run most recently (``workflows_capped`` says when
there are more; the viewer's workflow filter takes any id typed in)."""


def recent_workflows(rows: Sequence[Any]) -> dict[str, Any]:
    """The facets' workflows from the rows of the workflows run most recently, newest first, FACET_WORKFLOWS_MAX
    and one more at most: their ids in code point order, and whether more were left out."""
    ids = sorted(str(row[0]) for row in rows[:FACET_WORKFLOWS_MAX])
    return {"workflows": ids, "workflows_capped": len(rows) > FACET_WORKFLOWS_MAX}


def facets(conn: sqlite3.Connection, *, project: str | None) -> dict[str, Any]:
    """What the filter controls offer: the workflows run most recently (one index seek each for the distinct ids
    and one for each one's latest start), trigger types, statuses, modes."""
    extra, params = ("", []) if project is None else (" AND project = ?", [project])
    rows = conn.execute(
        f"WITH RECURSIVE v(x) AS (SELECT (SELECT min(workflow_id) FROM runs WHERE workflow_id IS NOT NULL{extra}) "
        f"UNION ALL SELECT (SELECT min(workflow_id) FROM runs WHERE workflow_id > v.x{extra}) FROM v "
        "WHERE v.x IS NOT NULL) "
        f"SELECT x, (SELECT started_at FROM runs WHERE workflow_id = v.x{extra} "
        "ORDER BY started_at DESC NULLS LAST LIMIT 1) AS latest FROM v WHERE x IS NOT NULL "
        "ORDER BY latest DESC NULLS LAST, x LIMIT ?",
        [*params, *params, *params, FACET_WORKFLOWS_MAX + 1],
    ).fetchall()
    return {
        **recent_workflows(rows),
        "triggers": [t.value for t in TriggerType],
        "statuses": [s.value for s in RunStatus],
        "modes": [m.value for m in RunMode],
    }


def _namespace(conn: sqlite3.Connection, run_id: str, project: str | None) -> str | None:
    """The namespace of the run ``run_id`` names for this reader (see :mod:`._namespace`); None if unknown."""
    return one_namespace(run_id, project, conn.execute(NAMESPACES_SQL, (run_id,)))


def inline_payload(text: str | None, name: str, deferred: list[str]) -> Any:
    if text is None:
        return None
    if len(text) > INLINE_PAYLOAD_MAX_CHARS:
        deferred.append(name)
        return None
    return json.loads(text)


def _run_row(conn: sqlite3.Connection, run_id: str, space: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        f"SELECT {RUN_SELECT}, {RUN_PAYLOADS_SELECT} FROM runs r LEFT JOIN payloads ls ON ls.seq = r.input_seq "
        f"LEFT JOIN payloads lf ON lf.seq = r.output_seq WHERE {run_scope('r.')}",
        (run_id, space),
    ).fetchone()
    return row


def run_header(conn: sqlite3.Connection, run_id: str, *, project: str | None) -> dict[str, Any] | None:
    """One run without its nodes: fields, small payloads, and an overview of its attempts; None if unknown."""
    space = _namespace(conn, run_id, project)
    row = None if space is None else _run_row(conn, run_id, space)
    if space is None or row is None:
        return None
    run = run_json(row)
    deferred: list[str] = []
    payload_chars: dict[str, int | None] = {}
    for record_field in detail_fields(RUN_FIELDS):
        if record_field.large:
            text = row[record_field.sources[0]]
            run[record_field.name] = inline_payload(text, record_field.name, deferred)
            payload_chars[record_field.name] = payload_size(text)
        else:
            run[record_field.name] = field_value(record_field, row)
    run["payload_chars"] = payload_chars
    run["deferred"] = deferred
    run["attempts"] = attempts_overview(conn, run_id, space, run)
    listed, listed_params, counted, counted_params = children_sql(run_id, space)
    run["children"] = children_json(
        conn.execute(listed, listed_params), conn.execute(counted, counted_params).fetchone()[0]
    )
    return run


def payload_size(text: str | None) -> int | None:
    return None if text is None else len(text)


def attempts_overview(conn: sqlite3.Connection, run_id: str, space: str, run: dict[str, Any]) -> dict[str, Any]:
    """Counts by status, the time span, the failing node, and how many attempts ran at once over time."""
    by_status = dict.fromkeys((s.value for s in NodeStatus), 0)
    for status, count in conn.execute(
        f"SELECT status, count(*) FROM node_runs WHERE {run_scope()} GROUP BY status", (run_id, space)
    ):
        name = status or NodeStatus.RUNNING.value
        by_status[name] = by_status.get(name, 0) + count
    # Seconds since the epoch straight from SQLite (to the microsecond, give or take a float's rounding).
    spans: list[tuple[float, float | None]] = conn.execute(
        f"SELECT {_EPOCH_S.format('started_at')}, {_EPOCH_S.format('completed_at')} FROM node_runs "
        f"WHERE {run_scope()} AND started_at IS NOT NULL AND status IS NOT ?",
        (run_id, space, NodeStatus.SKIPPED.value),
    ).fetchall()
    failing = (run.get("error") or {}).get("node_id")
    # The attempt to open for "failing node": its last failed attempt (the error that ended it).
    failed = conn.execute(
        f"SELECT n.node_id, n.span_id FROM node_runs n WHERE {run_scope('n.')} AND n.status = ? "
        "ORDER BY n.node_id IS NOT ?, n.started_at DESC, n.attempt DESC, n.item, n.span_id LIMIT 1",
        (run_id, space, NodeStatus.FAILED.value, failing),
    ).fetchone()
    failing_span = None
    if failed is not None:
        failing = failing or failed[0]
        failing_span = failed[1] if failed[0] == failing else None
    starts = [s for s, _ in spans]
    if run.get("started_at"):
        starts.append(epoch_s(run["started_at"]))
    ends = [e for _, e in spans if e is not None]
    if run.get("completed_at"):
        ends.append(epoch_s(run["completed_at"]))
    now_s = time.time()
    running = any(e is None for _, e in spans) or run.get("status") == RunStatus.RUNNING.value
    t0 = min(starts, default=None)
    t1 = None if t0 is None else max([*starts, *ends, *([now_s] if running else [])])
    strip, peak = concurrency_strip(spans, t0, t1, now_s)
    return {
        "total": sum(by_status.values()),
        "by_status": by_status,
        "failing_node_id": failing,
        "failing_span_id": failing_span,
        "t0": t0,
        "t1": t1,
        "now": now_s,
        "concurrency": strip,
        "max_concurrency": peak,
    }


class _EventOrder(enum.IntEnum):
    """Which of a concurrency strip's events at one time comes first."""

    END = 0
    START = 1
    INSTANT_END = 2
    """The end of an attempt that ended at its start time."""


def concurrency_strip(
    spans: list[tuple[float, float | None]], t0: float | None, t1: float | None, now_s: float
) -> tuple[list[int], int]:
    """Most attempts running at once in each of CONCURRENCY_BUCKETS slices of [t0, t1], and overall."""
    if not spans or t0 is None or t1 is None:
        return [], 0
    width = max(t1 - t0, 1e-6) / CONCURRENCY_BUCKETS
    # (time, order, change): at equal times an attempt that ran before ends first, so back-to-back attempts do
    # not overlap; then attempts start; then those that ended as they started (shorter than the times'
    # precision) end, so each of them counts as running at its start.
    events: list[tuple[float, _EventOrder, int]] = []
    for start, end in spans:
        stop = max(start, now_s if end is None else end)
        events.append((start, _EventOrder.START, 1))
        events.append((stop, _EventOrder.INSTANT_END if stop == start else _EventOrder.END, -1))
    events.sort()
    buckets = [0] * CONCURRENCY_BUCKETS
    active = position = 0
    for index in range(CONCURRENCY_BUCKETS):
        edge = t0 + (index + 1) * width
        level = active  # whatever runs across the start of this slice
        while position < len(events) and (events[position][0] < edge or index == CONCURRENCY_BUCKETS - 1):
            active += events[position][2]
            position += 1
            level = max(level, active)
        buckets[index] = level
    return buckets, max(buckets)


def attempt_row(row: ColumnsByName) -> dict[str, Any]:
    return record_json(_ATTEMPT_ROW_FIELDS, row)


def attempts_page(
    conn: sqlite3.Connection, run_id: str, *, project: str | None, offset: int, limit: int
) -> dict[str, Any] | None:
    """Attempts ``offset`` to ``offset + limit`` of a run in start order, without payloads; None if unknown."""
    space = _namespace(conn, run_id, project)
    if space is None:
        return None
    rows = conn.execute(
        f"SELECT {ATTEMPT_SELECT} FROM node_runs n WHERE {run_scope('n.')} {_ATTEMPT_ORDER} LIMIT ? OFFSET ?",
        (run_id, space, limit, offset),
    ).fetchall()
    total = conn.execute(f"SELECT count(*) FROM node_runs WHERE {run_scope()}", (run_id, space)).fetchone()[0]
    return {"offset": offset, "total": total, "attempts": [attempt_row(row) for row in rows]}


def _node_row(conn: sqlite3.Connection, run_id: str, space: str, span_id: str) -> sqlite3.Row | None:
    row: sqlite3.Row | None = conn.execute(
        f"SELECT {NODE_SELECT} WHERE {run_scope('n.')} AND n.span_id = ?", (run_id, space, span_id)
    ).fetchone()
    return row


def attempt_detail(
    conn: sqlite3.Connection, run_id: str, span_id: str, *, project: str | None
) -> dict[str, Any] | None:
    """One node attempt with its payloads (those over INLINE_PAYLOAD_MAX_CHARS listed in ``deferred``)."""
    space = _namespace(conn, run_id, project)
    row = None if space is None else _node_row(conn, run_id, space, span_id)
    if space is None or row is None:
        return None
    values = dict(row)
    payloads = {kind: values[column] for kind, column in PAYLOAD_COLUMNS.items()}
    deferred = [name for name, text in payloads.items() if text is not None and len(text) > INLINE_PAYLOAD_MAX_CHARS]
    for name in deferred:
        values[PAYLOAD_COLUMNS[name]] = None
    node = node_json(values)
    node["payload_chars"] = {name: payload_size(text) for name, text in payloads.items()}
    node["deferred"] = deferred
    node["index"] = _attempt_index(conn, run_id, space, span_id)
    return node


def _attempt_index(conn: sqlite3.Connection, run_id: str, space: str, span_id: str) -> int:
    """Where an attempt is in its run's start order (the row the waterfall shows it on)."""
    # The sentinels sort where NULL does in ORDER BY (first), so the count matches the paging order.
    key = "(coalesce(n.started_at, ''), coalesce(n.attempt, -1), coalesce(n.item, -1), n.span_id)"
    row = conn.execute(
        f"SELECT count(*) FROM node_runs n, node_runs t WHERE {run_scope('t.')} AND t.span_id = ? "
        "AND n.run_id = t.run_id AND ifnull(n.project, '') = ifnull(t.project, '') "
        f"AND {key} < {key.replace('n.', 't.')}",
        (run_id, space, span_id),
    ).fetchone()
    return int(row[0])


def node_payload(
    conn: sqlite3.Connection, run_id: str, span_id: str, kind: PayloadKind, *, project: str | None
) -> str | None:
    """One payload of a node attempt as stored JSON text (a stack as a JSON string); None if there is none."""
    if kind not in PAYLOAD_COLUMNS:
        raise QueryError(f"payload {str(kind)!r} is not one of {', '.join(PayloadKind)}")
    space = _namespace(conn, run_id, project)
    row = None if space is None else _node_row(conn, run_id, space, span_id)
    if row is None:
        return None
    text: str | None = row[PAYLOAD_COLUMNS[kind]]
    if text is None:
        return None
    return json.dumps(text) if kind == PayloadKind.ERROR_STACK else text


def run_payload(conn: sqlite3.Connection, run_id: str, kind: PayloadKind, *, project: str | None) -> str | None:
    """The input (trigger payload) or output of a run as stored JSON text; None if there is none."""
    if kind not in RUN_PAYLOAD_KINDS:
        raise QueryError(f"run payload {str(kind)!r} is not one of {', '.join(RUN_PAYLOAD_KINDS)}")
    space = _namespace(conn, run_id, project)
    row = None if space is None else _run_row(conn, run_id, space)
    if row is None:
        return None
    text: str | None = row[PAYLOAD_COLUMNS[kind]]
    return text
