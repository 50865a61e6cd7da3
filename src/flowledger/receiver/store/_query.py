"""Reading projections: the SQL of listings and the JSON shape of runs and nodes.

The fields are declared once in :mod:`._records` (``RUN_FIELDS``,
``NODE_FIELDS``); the ``SELECT`` lists and the JSON shapes derive from them.
"""

from __future__ import annotations

from typing import Any, Final

from flowledger.receiver.store._protocol import RunQuery
from flowledger.receiver.store._records import (
    NODE_FIELDS,
    NODE_PAYLOAD_SQL,
    RUN_FIELDS,
    RUN_PAYLOAD_SQL,
    ColumnsByName,
    detail_fields,
    record_json,
    select_list,
    stored_fields,
)
from flowledger.receiver.store._search import attribute_clause, attribute_conditions, hits_sql, search_clause
from flowledger.receiver.store._views import RunPageCursor

__all__ = [
    "MATCHED_COLUMN",
    "NEWEST_FIRST",
    "NODE_SELECT",
    "OLDEST_FIRST",
    "RUN_PAYLOADS_SELECT",
    "RUN_SELECT",
    "keyset",
    "keyset_condition",
    "node_json",
    "page_branches",
    "past_cursor",
    "run_json",
    "run_page_sql",
    "runs_count_sql",
    "runs_where",
]

NEWEST_FIRST: Final = "ORDER BY r.started_at DESC, r.run_id DESC, r.project"
"""The order of every run listing: newest first, ties broken by run id, then by project (no project first: NULL
sorts before every name, as '' does); each listing index of ``runs`` is in this order."""
OLDEST_FIRST: Final = "ORDER BY r.started_at ASC, r.run_id ASC, r.project DESC"
"""The reverse of :data:`NEWEST_FIRST` (the same indexes, read backwards)."""
MATCHED_COLUMN: Final = "matched"
"""A search's page rows carry the number of runs its filters match (cursor included) in this column."""
RUN_SELECT: Final = select_list(stored_fields(RUN_FIELDS), "r")
"""Columns of ``runs r`` that :func:`run_json` reads (rows are read by column name)."""
NODE_SELECT: Final = (
    select_list(stored_fields(NODE_FIELDS), "n", NODE_PAYLOAD_SQL)
    + " FROM node_runs n LEFT JOIN payloads li ON li.seq = n.input_seq LEFT JOIN payloads lo ON lo.seq = n.output_seq"
)
"""``SELECT`` list and ``FROM`` of node attempts, payloads read from the payload rows of their ledger entries."""
RUN_PAYLOADS_SELECT: Final = select_list(detail_fields(RUN_FIELDS), "r", RUN_PAYLOAD_SQL)
"""Payload columns of a run (``input_json``, ``output_json``, ``attributes_json``), from
``LEFT JOIN payloads ls ON ls.seq = r.input_seq`` (and ``lf`` for output)."""


def run_json(row: ColumnsByName, *, detail: bool = False) -> dict[str, Any]:
    """The API shape of one run from a row selected with RUN_SELECT (and RUN_PAYLOADS_SELECT for its ``detail``).

    The fields the API fills in (``trace_url``) are left out.
    """
    return record_json(stored_fields(RUN_FIELDS, detail=detail), row)


def node_json(row: ColumnsByName) -> dict[str, Any]:
    """The API shape of one node attempt from a row selected with NODE_SELECT."""
    return record_json(stored_fields(NODE_FIELDS), row)


def past_cursor(cursor: RunPageCursor, *, newer: bool = False) -> tuple[str, list[Any]]:
    """The condition (``?`` parameters, engine-neutral) on ``runs r`` for the runs with a start time that come
    after ``cursor`` in :data:`NEWEST_FIRST` order (before it, ``newer``).

    One range of a listing index, ``(started_at, run_id) <= cursor``, whose first rows (the other projects'
    runs of the cursor's start time and id: a few at most) are kept by project; an old token without a
    project stands after all of them. A cursor on a run without a start time (``started_at`` '') comes
    before every started run here: :func:`keyset` pages those runs by id.
    """
    return _past("(r.started_at, r.run_id)", [cursor.started_at, cursor.run_id], cursor.namespace, newer=newer)


def _past(key: str, values: list[Any], namespace: str | None, *, newer: bool) -> tuple[str, list[Any]]:
    """``key`` (one column or a row value) past ``values``, ties broken by the project past ``namespace``."""
    marks = "?" if len(values) == 1 else f"({', '.join('?' * len(values))})"
    beyond, space_beyond = (">", "<") if newer else ("<", ">")
    if namespace is None:
        return f"{key} {beyond} {marks}", values
    return (
        f"{key} {beyond}= {marks} AND ({key} {beyond} {marks} OR coalesce(r.project, '') {space_beyond} ?)",
        [*values, *values, namespace],
    )


def page_branches(cursor: RunPageCursor, *, newer: bool = False) -> list[tuple[str, list[Any]]]:
    """The runs after ``cursor`` in :data:`NEWEST_FIRST` order (before it, ``newer``) as conditions on ``runs r``
    (engine-neutral), each a range of a listing index: read one after the other, each in the order of the
    direction (:data:`OLDEST_FIRST` for ``newer``), they are those runs in that order.

    Runs without a start time come after every started run, ordered by id: a row comparison on the start
    time never reaches them, so they are a range of their own.
    """
    if cursor.started_at:
        started, params = past_cursor(cursor, newer=newer)
        return [(started, params)] if newer else [(started, params), ("r.started_at IS NULL", [])]
    clause, params = _past("r.run_id", [cursor.run_id], cursor.namespace, newer=newer)
    unstarted = (f"r.started_at IS NULL AND {clause}", params)
    return [unstarted, ("r.started_at IS NOT NULL", [])] if newer else [unstarted]


def keyset(cursor: RunPageCursor | None) -> list[tuple[str, list[Any]]]:
    """Conditions (each `` AND ...``) for "after ``cursor`` in newest-first order", each a range of an index
    (their union is the rest). Engine-neutral.

    A run without a start time sorts last (SQLite puts NULL last in a descending order); a cursor
    on such a run has an empty ``started_at``.
    """
    if cursor is None:
        return [("", [])]
    if not cursor.started_at:
        clause, params = _past("r.run_id", [cursor.run_id], cursor.namespace, newer=False)
        return [(f" AND r.started_at IS NULL AND {clause}", params)]
    clause, params = past_cursor(cursor)
    return [(f" AND {clause}", params), (" AND r.started_at IS NULL", [])]


def keyset_condition(cursor: RunPageCursor | None) -> tuple[str, list[Any]]:
    """:func:`keyset` as one `` AND (...)`` condition ('' for no cursor), for a reader that pages without branches."""
    if cursor is None:
        return "", []
    parts = keyset(cursor)
    either = " OR ".join(f"({clause.removeprefix(' AND ')})" for clause, _ in parts)
    return f" AND ({either})", [param for _, params in parts for param in params]


def run_page_sql(query: RunQuery, *, fetch: int) -> tuple[str, list[Any]]:
    """The SELECT (and parameters) of up to ``fetch`` runs after ``query.cursor`` and ``query.offset``, newest first.

    Each status asked for and each part of the keyset condition is its own branch, read in index
    order and cut at ``offset + fetch`` rows; the branches are merged and cut again. So a page costs
    the same at any depth of a cursor, whichever statuses are asked for, and never sorts every
    matching run (``status IN (...)`` on one index would).
    """
    if query.search is not None or query.attributes:
        return _matched_page_sql(query, fetch=fetch)
    where, params = runs_where(
        RunQuery(
            workflow_id=query.workflow_id,
            project=query.project,
            search=query.search,
            attributes=query.attributes,
            run_id_prefix=query.run_id_prefix,
            context=query.context,
        )
    )
    where = where or " WHERE 1"
    statuses: list[tuple[str, list[Any]]] = [("", [])]
    if query.statuses:
        statuses = [(" AND r.status = ?", [status.value]) for status in query.statuses]
    branches = [
        (where + by_status + after, [*params, *status_params, *after_params])
        for by_status, status_params in statuses
        for after, after_params in keyset(query.cursor)
    ]
    if len(branches) == 1:
        (branch_where, branch_params) = branches[0]
        sql = f"SELECT {RUN_SELECT} FROM runs r{branch_where} {NEWEST_FIRST} LIMIT ? OFFSET ?"
        return sql, [*branch_params, fetch, query.offset]
    parts: list[str] = []
    all_params: list[Any] = []
    for branch_where, branch_params in branches:
        parts.append(f"SELECT * FROM (SELECT {RUN_SELECT} FROM runs r{branch_where} {NEWEST_FIRST} LIMIT ?)")
        all_params += [*branch_params, query.offset + fetch]
    merged = " UNION ALL ".join(parts)
    sql = f"SELECT * FROM ({merged}) ORDER BY started_at DESC, run_id DESC, project LIMIT ? OFFSET ?"
    return sql, [*all_params, fetch, query.offset]


def _matched_page_sql(query: RunQuery, *, fetch: int) -> tuple[str, list[Any]]:
    """A page of a search or an attribute filter: a search's runs are a bounded set (its hits, looked up by
    primary key in the order FTS5 gives them); only their ids and start times are sorted, then the page's
    rows are read."""
    source, source_params = _matched_runs(query)
    where, params = runs_where(query, search=False)
    params = [*source_params, *params]
    after, after_params = keyset_condition(query.cursor)
    if after:
        where = (where or " WHERE 1") + after
        params = [*params, *after_params]
    # matched: every run the filters match (cursor included), counted in the same pass as the page.
    ids = (
        f"SELECT r.rowid AS id, count(*) OVER () AS {MATCHED_COLUMN} FROM {source}{where} {NEWEST_FIRST} "
        "LIMIT ? OFFSET ?"
    )
    sql = f"SELECT {RUN_SELECT}, m.{MATCHED_COLUMN} FROM ({ids}) m CROSS JOIN runs r ON r.rowid = m.id {NEWEST_FIRST}"
    return sql, [*params, fetch, query.offset]


def _matched_runs(query: RunQuery) -> tuple[str, list[Any]]:
    """The FROM of a search: its (bounded) hits joined to ``runs r`` in that order, or ``runs r`` alone."""
    if query.search is None:
        return "runs r", []
    sql, params = hits_sql(query.search)
    return f"({sql}) h CROSS JOIN runs r ON r.run_id = h.run_id AND ifnull(r.project, '') = h.space", params


def runs_count_sql(query: RunQuery, *, cap: int) -> tuple[str, list[Any]]:
    """A count of the runs ``query`` matches (cursor and paging aside) that stops after ``cap + 1``."""
    source, source_params = _matched_runs(query)
    where, params = runs_where(query, search=False)
    return f"SELECT count(*) FROM (SELECT 1 FROM {source}{where} LIMIT ?)", [*source_params, *params, cap + 1]


def runs_where(query: RunQuery, *, search: bool = True, attributes: bool = True) -> tuple[str, list[Any]]:
    """The WHERE clause (with its parameters) of a run listing; each filter has a covering index. ``search`` and
    ``attributes`` False leave out the search and ``attr.`` filters (an engine spelling them its own way)."""
    clauses: list[str] = []
    params: list[Any] = []
    if query.workflow_id is not None:
        clauses.append("r.workflow_id = ?")
        params.append(query.workflow_id)
    if query.statuses:
        clauses.append(f"r.status IN ({', '.join('?' * len(query.statuses))})")
        params += [status.value for status in query.statuses]
    if query.project is not None:
        clauses.append("r.project = ?")
        params.append(query.project)
    if query.run_id_prefix is not None:
        clauses.append("r.run_id >= ? AND r.run_id < ?")
        params += [query.run_id_prefix, query.run_id_prefix + "\U0010ffff"]
    if search and query.search is not None:
        clause, clause_params = search_clause(query.search)
        clauses.append(clause)
        params += clause_params
    if attributes and query.attributes:
        attribute_clauses, attribute_params = attribute_conditions(query.attributes, attribute_clause)
        clauses += attribute_clauses
        params += attribute_params
    context_clauses, context_params = query.context.conditions("r.")
    clauses += context_clauses
    params += context_params
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params
