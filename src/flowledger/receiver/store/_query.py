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
    record_json,
    select_list,
)

__all__ = [
    "NEWEST_FIRST",
    "NODE_SELECT",
    "RUN_PAYLOADS_SELECT",
    "RUN_SELECT",
    "node_json",
    "run_json",
    "runs_where",
]

NEWEST_FIRST: Final = "ORDER BY r.started_at DESC, r.run_id DESC"
"""The order of every run listing: newest first, ties broken by run id (an index of ``runs``)."""
RUN_SELECT: Final = select_list(RUN_FIELDS, "r")
"""Columns of ``runs r`` that :func:`run_json` reads (rows are read by column name)."""
NODE_SELECT: Final = (
    select_list(NODE_FIELDS, "n", NODE_PAYLOAD_SQL)
    + " FROM node_runs n LEFT JOIN payloads li ON li.seq = n.input_seq LEFT JOIN payloads lo ON lo.seq = n.output_seq"
)
"""``SELECT`` list and ``FROM`` of node attempts, payloads read from the payload rows of their ledger entries."""
RUN_PAYLOADS_SELECT: Final = ", ".join(f"{expr} AS {name}" for name, expr in RUN_PAYLOAD_SQL.items())
"""Payload columns of a run (``input_json``, ``output_json``, ``attributes_json``), from
``LEFT JOIN payloads ls ON ls.seq = r.input_seq`` (and ``lf`` for output)."""


def run_json(row: ColumnsByName) -> dict[str, Any]:
    """The API shape of one run from a row selected with RUN_SELECT."""
    return record_json(RUN_FIELDS, row)


def node_json(row: ColumnsByName) -> dict[str, Any]:
    """The API shape of one node attempt from a row selected with NODE_SELECT."""
    return record_json(NODE_FIELDS, row)


def runs_where(query: RunQuery) -> tuple[str, list[Any]]:
    """The WHERE clause (with its parameters) of a run listing; each filter has a covering index."""
    clauses: list[str] = []
    params: list[Any] = []
    if query.workflow_id is not None:
        clauses.append("r.workflow_id = ?")
        params.append(query.workflow_id)
    if query.status is not None:
        clauses.append("r.status = ?")
        params.append(query.status.value)
    if query.project is not None:
        clauses.append("r.project = ?")
        params.append(query.project)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params
