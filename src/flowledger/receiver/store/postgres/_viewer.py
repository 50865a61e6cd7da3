"""The history viewer's queries on PostgreSQL, through the SQLite engine's engine-neutral SQL.

The filters (:func:`~.._viewer_query.filter_where`), the select lists of runs,
attempts and attempt rows, and the concurrency strip are the SQLite engine's,
translated by :mod:`._dialect`; what differs is spelled here: where NULLs
sort (SQLite puts them first ascending, PostgreSQL last), ``dry_run`` is a
boolean, epoch seconds come from ``extract``, and the summary's counts are
counted over ``runs`` (this engine keeps no ``run_counts``). A search that is not
the start of a run id is this engine's full-text search (:mod:`._search`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Final

import asyncpg

from flowledger._exceptions import QueryError
from flowledger._money import nanos_to_usd
from flowledger._wire import NodeStatus, RunStatus, TriggerType
from flowledger.receiver.store._namespace import one_namespace
from flowledger.receiver.store._query import node_json, page_branches, run_json
from flowledger.receiver.store._records import RUN_FIELDS, detail_fields, field_value
from flowledger.receiver.store._time import epoch_s
from flowledger.receiver.store._viewer_query import (
    ATTEMPT_SELECT,
    FACET_WORKFLOWS_MAX,
    FINISHED_STATUSES,
    PAYLOAD_COLUMNS,
    attempt_row,
    concurrency_strip,
    cost_nanos,
    filter_where,
    inline_payload,
    payload_size,
    recent_workflows,
)
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
from flowledger.receiver.store.postgres._dialect import numbered
from flowledger.receiver.store.postgres._namespace import PG_NAMESPACES_SQL, pg_run_scope
from flowledger.receiver.store.postgres._search import pg_search_clause

__all__ = [
    "check_run_payload_kind",
    "pg_attempt_detail",
    "pg_attempts_page",
    "pg_facets",
    "pg_node_payload",
    "pg_run_header",
    "pg_run_summary",
    "pg_viewer_runs",
]

NEWEST_FIRST: Final = "ORDER BY r.started_at DESC NULLS LAST, r.run_id DESC, r.project NULLS FIRST"
_OLDEST_FIRST: Final = "ORDER BY r.started_at ASC NULLS FIRST, r.run_id ASC, r.project DESC NULLS LAST"
_ATTEMPT_ORDER: Final = "ORDER BY n.started_at NULLS FIRST, n.attempt NULLS FIRST, n.item NULLS FIRST, n.span_id"
_EPOCH_S: Final = "extract(epoch FROM {}::timestamptz)::float8"
_SUM_USD: Final = (
    "coalesce(sum(trunc(r.cost_usd)::bigint), 0), "
    "coalesce(sum(floor((r.cost_usd - trunc(r.cost_usd)) * 1e9 + 0.5)::bigint), 0)"
)
"""Runs' costs as the sums (``numeric``, exact at any size) of their whole dollars and of their nano-dollars below
them, as the SQLite engine splits them (:data:`.._viewer_query._SUM_USD`; half up, as SQLite's ``round``): one
run's nano-dollars pass a bigint from 9.2 billion USD on (the wire takes up to 2**53 USD)."""
_DRY_RUN: Final = "r.dry_run = ?"


def _where(run_filter: RunFilter) -> tuple[str, list[Any]]:
    """:func:`filter_where` in PostgreSQL's spelling: ``TRUE`` for no condition, the mode compared as a boolean."""
    where, params = filter_where(replace(run_filter, text=None))
    if run_filter.text:  # this engine's search condition (:mod:`._search`) in place of FTS5's
        clause, clause_params = pg_search_clause(run_filter.text)
        where, params = ("" if where == "1" else f"{where} AND ") + clause, [*params, *clause_params]
    if where == "1":
        return "TRUE", params
    # filter_where passes the mode as 1 or 0 (SQLite has no booleans).
    return where.replace(_DRY_RUN, "r.dry_run = (?::int <> 0)"), params


async def _resolve_search(conn: asyncpg.Connection, run_filter: RunFilter) -> RunFilter:
    """A search that could be a run id or text: the id when a run has it, else the text; then check the id search."""
    if run_filter.run_id_prefix and run_filter.text:
        prefix = run_filter.run_id_prefix
        found = await conn.fetchval(
            "SELECT 1 FROM runs WHERE run_id >= $1 AND run_id < $2 AND ($3::text IS NULL OR project = $3) LIMIT 1",
            prefix,
            prefix + "\U0010ffff",
            run_filter.project,
        )
        run_filter = replace(run_filter, text=None) if found else replace(run_filter, run_id_prefix=None)
    searched = run_filter.run_id_prefix
    if searched:
        # The filter's project's runs only (an API key's): another project's are neither refused for nor counted.
        count = await conn.fetchval(
            "SELECT count(*) FROM (SELECT 1 FROM runs WHERE run_id >= $1 AND run_id < $2 "
            "AND ($4::text IS NULL OR coalesce(project, '') = $4) LIMIT $3) m",
            searched,
            searched + "\U0010ffff",
            RUN_ID_SEARCH_MAX_MATCHES + 1,
            run_filter.project,
        )
        if int(count) > RUN_ID_SEARCH_MAX_MATCHES:
            raise QueryError(
                f"the search {searched[:40]!r} matches more than {RUN_ID_SEARCH_MAX_MATCHES:,} runs; "
                "type more of the run id"
            )
    return run_filter


async def _exists(conn: asyncpg.Connection, where: str, params: Sequence[Any]) -> bool:
    return bool(await conn.fetchval(numbered(f"SELECT EXISTS (SELECT 1 FROM runs r WHERE {where})"), *params))


async def _any(
    conn: asyncpg.Connection, base_where: str, base_params: list[Any], branches: list[tuple[str, list[Any]]]
) -> bool:
    """Whether any run matches ``base_where`` and one of ``branches``."""
    for clause, clause_params in branches:
        if await _exists(conn, f"{base_where} AND {clause}", [*base_params, *clause_params]):
            return True
    return False


async def pg_viewer_runs(
    conn: asyncpg.Connection,
    run_select: str,
    run_filter: RunFilter,
    *,
    limit: int,
    cursor: RunPageCursor | None = None,
    direction: PageDirection = PageDirection.OLDER,
) -> RunListPage:
    """A page of ``limit`` runs next to ``cursor`` (the newest runs without one), newest first."""
    run_filter = await _resolve_search(conn, run_filter)
    base_where, base_params = _where(run_filter)
    order = _OLDEST_FIRST if cursor is not None and direction is PageDirection.NEWER else NEWEST_FIRST
    branches = [("TRUE", [])] if cursor is None else page_branches(cursor, newer=direction is PageDirection.NEWER)
    rows: list[Any] = []
    for clause, clause_params in branches:  # each a range of an index, read in order until the page is full
        rows += await conn.fetch(
            numbered(f"SELECT {run_select} FROM runs r WHERE {base_where} AND {clause} {order} LIMIT ?"),
            *base_params,
            *clause_params,
            limit + 1 - len(rows),
        )
        if len(rows) > limit:
            break
    more = len(rows) > limit
    runs = [run_json(row) for row in rows[:limit]]
    if cursor is None:
        return RunListPage(runs, RunPageCursor.of(runs[-1]) if more else None, None)
    if direction is PageDirection.NEWER:
        if not more:
            # Fewer newer runs than a page: this is the first page, shown whole.
            return await pg_viewer_runs(conn, run_select, run_filter, limit=limit)
        runs.reverse()
    if not runs:
        return RunListPage([], None, None)
    first, last = RunPageCursor.of(runs[0]), RunPageCursor.of(runs[-1])
    if direction is PageDirection.OLDER:
        has_older = more
        has_newer = await _any(conn, base_where, base_params, page_branches(first, newer=True))
    else:
        has_newer = True
        has_older = await _any(conn, base_where, base_params, page_branches(last))
    return RunListPage(runs, last if has_older else None, first if has_newer else None)


async def pg_run_summary(
    conn: asyncpg.Connection, run_filter: RunFilter, *, percentile_sample_max: int = PERCENTILE_SAMPLE_MAX
) -> dict[str, Any]:
    """The summary cards over every run the filter matches (as :func:`.._viewer_query.run_summary` counts them)."""
    run_filter = await _resolve_search(conn, run_filter)
    where, params = _where(run_filter)
    by_status = dict.fromkeys((s.value for s in RunStatus), 0)
    dry = live = cost = 0
    for status, dry_run, count, dollars, rest_nanos in await conn.fetch(
        numbered(
            f"SELECT r.status, r.dry_run, count(*), {_SUM_USD} FROM runs r WHERE {where} GROUP BY r.status, r.dry_run"
        ),
        *params,
    ):
        by_status[status] = by_status.get(status, 0) + int(count)
        if dry_run:
            dry += int(count)
        else:
            live += int(count)
        cost += cost_nanos(0, int(dollars), int(rest_nanos))
    finished = sum(by_status[s] for s in FINISHED_STATUSES)
    last = await conn.fetchrow(
        numbered(
            f"SELECT r.run_id, r.started_at, r.status, r.project FROM runs r WHERE {where} {NEWEST_FIRST} LIMIT 1"
        ),
        *params,
    )
    durations = sorted(
        row[0]
        for row in await conn.fetch(
            numbered(
                f"SELECT r.duration_ms FROM runs r WHERE {where} AND r.duration_ms IS NOT NULL {NEWEST_FIRST} LIMIT ?"
            ),
            *params,
            percentile_sample_max,
        )
    )

    def rank(fraction: float) -> Any:
        return durations[max(0, math.ceil(len(durations) * fraction) - 1)] if durations else None

    return {
        "total": sum(by_status.values()),
        "by_status": by_status,
        "dry_run": dry,
        "live": live,
        "success_rate": None if not finished else by_status[RunStatus.SUCCEEDED.value] / finished,
        "p50_duration_ms": rank(0.5),
        "p95_duration_ms": rank(0.95),
        "duration_sample": len(durations),
        "duration_sample_capped": len(durations) >= percentile_sample_max,
        "total_cost_usd": nanos_to_usd(cost),
        "total_cost_usd_nanos": cost,
        "last_run": None
        if last is None
        else {"run_id": last[0], "started_at": last[1], "status": last[2], "project": last[3]},
    }


async def pg_facets(conn: asyncpg.Connection, *, project: str | None) -> dict[str, Any]:
    """What the filter controls offer: the workflows run most recently (one index seek each for the distinct ids
    and one for each one's latest start, as on SQLite), trigger types, statuses, modes."""
    extra = "" if project is None else " AND project = $2"
    rows = await conn.fetch(
        "WITH RECURSIVE v(x) AS (SELECT (SELECT min(workflow_id) FROM runs WHERE workflow_id IS NOT NULL"
        f"{extra}) UNION ALL SELECT (SELECT min(workflow_id) FROM runs WHERE workflow_id > v.x{extra}) "
        "FROM v WHERE v.x IS NOT NULL) "
        f"SELECT x, (SELECT started_at FROM runs WHERE workflow_id = v.x{extra} "
        "ORDER BY started_at DESC NULLS LAST LIMIT 1) AS latest FROM v WHERE x IS NOT NULL "
        'ORDER BY latest DESC NULLS LAST, x COLLATE "C" LIMIT $1',
        FACET_WORKFLOWS_MAX + 1,
        *([] if project is None else [project]),
    )
    return {
        **recent_workflows(rows),
        "triggers": [t.value for t in TriggerType],
        "statuses": [s.value for s in RunStatus],
        "modes": [m.value for m in RunMode],
    }


async def _namespace(conn: asyncpg.Connection, run_id: str, project: str | None) -> str | None:
    """The namespace of the run ``run_id`` names for this reader (see :mod:`.._namespace`); None if unknown."""
    return one_namespace(run_id, project, await conn.fetch(PG_NAMESPACES_SQL, run_id))


def _node_sql(node_select: str) -> str:
    """One attempt: ``$1`` its run's id, ``$2`` the run's namespace, ``$3`` its span."""
    return f"SELECT {node_select} WHERE {pg_run_scope(1, 'n.')} AND n.span_id = $3"


def pg_run_header(row: asyncpg.Record) -> dict[str, Any]:
    """A run's JSON from its row with payloads: fields, small payloads inline, large ones ``deferred``."""
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
    return run


async def pg_attempts_overview(
    conn: asyncpg.Connection, run_id: str, space: str, run: dict[str, Any]
) -> dict[str, Any]:
    """Counts by status, the time span, the failing node, and how many attempts ran at once over time."""
    by_status = dict.fromkeys((s.value for s in NodeStatus), 0)
    for status, count in await conn.fetch(
        f"SELECT status, count(*) FROM node_runs WHERE {pg_run_scope(1)} GROUP BY status", run_id, space
    ):
        name = status or NodeStatus.RUNNING.value
        by_status[name] = by_status.get(name, 0) + int(count)
    spans: list[tuple[float, float | None]] = [
        (float(start), None if end is None else float(end))
        for start, end in await conn.fetch(
            f"SELECT {_EPOCH_S.format('started_at')}, {_EPOCH_S.format('completed_at')} FROM node_runs "
            f"WHERE {pg_run_scope(1)} AND started_at IS NOT NULL AND status IS DISTINCT FROM $3",
            run_id,
            space,
            NodeStatus.SKIPPED.value,
        )
    ]
    failing = (run.get("error") or {}).get("node_id")
    # The attempt to open for "failing node": its last failed attempt (the error that ended it).
    failed = await conn.fetchrow(
        f"SELECT n.node_id, n.span_id FROM node_runs n WHERE {pg_run_scope(1, 'n.')} AND n.status = $3 "
        "ORDER BY n.node_id IS DISTINCT FROM $4, n.started_at DESC NULLS LAST, n.attempt DESC NULLS LAST, "
        "n.item NULLS FIRST, n.span_id LIMIT 1",
        run_id,
        space,
        NodeStatus.FAILED.value,
        failing,
    )
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


async def pg_attempts_page(
    conn: asyncpg.Connection, run_id: str, *, project: str | None, offset: int, limit: int
) -> dict[str, Any] | None:
    """Attempts ``offset`` to ``offset + limit`` of a run in start order, without payloads; None if unknown."""
    space = await _namespace(conn, run_id, project)
    if space is None:
        return None
    rows = await conn.fetch(
        f"SELECT {ATTEMPT_SELECT} FROM node_runs n WHERE {pg_run_scope(1, 'n.')} {_ATTEMPT_ORDER} LIMIT $3 OFFSET $4",
        run_id,
        space,
        limit,
        offset,
    )
    total = await conn.fetchval(f"SELECT count(*) FROM node_runs WHERE {pg_run_scope(1)}", run_id, space)
    return {"offset": offset, "total": int(total), "attempts": [attempt_row(row) for row in rows]}


async def pg_attempt_detail(
    conn: asyncpg.Connection, node_select: str, run_id: str, span_id: str, *, project: str | None
) -> dict[str, Any] | None:
    """One node attempt with its payloads (those over INLINE_PAYLOAD_MAX_CHARS listed in ``deferred``)."""
    space = await _namespace(conn, run_id, project)
    row = None if space is None else await conn.fetchrow(_node_sql(node_select), run_id, space, span_id)
    if row is None:
        return None
    values = dict(row)
    payloads = {kind: values[column] for kind, column in PAYLOAD_COLUMNS.items()}
    deferred = [name for name, text in payloads.items() if text is not None and len(text) > INLINE_PAYLOAD_MAX_CHARS]
    for name in deferred:
        values[PAYLOAD_COLUMNS[name]] = None
    node = node_json(values)
    node["payload_chars"] = {name: payload_size(text) for name, text in payloads.items()}
    node["deferred"] = deferred
    # Where it is in the run's start order; the sentinels sort where NULL does in that order (first).
    key = "(coalesce(n.started_at, ''), coalesce(n.attempt, -1), coalesce(n.item, -1), n.span_id)"
    node["index"] = int(
        await conn.fetchval(
            f"SELECT count(*) FROM node_runs n, node_runs t WHERE {pg_run_scope(1, 't.')} AND t.span_id = $3 "
            "AND n.run_id = t.run_id AND coalesce(n.project, '') = coalesce(t.project, '') "
            f"AND {key} < {key.replace('n.', 't.')}",
            run_id,
            space,
            span_id,
        )
    )
    return node


async def pg_node_payload(
    conn: asyncpg.Connection, node_select: str, run_id: str, span_id: str, kind: PayloadKind, *, project: str | None
) -> str | None:
    """One payload of a node attempt as stored JSON text (a stack as a JSON string); None if there is none."""
    if kind not in PAYLOAD_COLUMNS:
        raise QueryError(f"payload {str(kind)!r} is not one of {', '.join(PayloadKind)}")
    space = await _namespace(conn, run_id, project)
    row = None if space is None else await conn.fetchrow(_node_sql(node_select), run_id, space, span_id)
    if row is None:
        return None
    text: str | None = row[PAYLOAD_COLUMNS[kind]]
    if text is None:
        return None
    return json.dumps(text) if kind == PayloadKind.ERROR_STACK else text


def check_run_payload_kind(kind: PayloadKind) -> str:
    """The result column of a run payload kind; QueryError for a kind runs do not have."""
    if kind not in RUN_PAYLOAD_KINDS:
        raise QueryError(f"run payload {str(kind)!r} is not one of {', '.join(RUN_PAYLOAD_KINDS)}")
    return PAYLOAD_COLUMNS[kind]
