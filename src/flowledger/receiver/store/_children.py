"""The runs a run started (its children): the newest few, and how many there are.

A run started inside another run records it as ``parent_run_id`` (see
:mod:`flowledger._run_context`). One run's detail (``GET /api/runs/{run_id}``,
``show``, the viewer's run page) lists its children through the
``runs_by_parent`` index: at most :data:`CHILDREN_LISTED_MAX` of them, newest
first, and their count up to :data:`CHILDREN_COUNT_MAX`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from flowledger.receiver.store._records import ColumnsByName

__all__ = [
    "CHILDREN_COUNT_MAX",
    "CHILDREN_LISTED_MAX",
    "CHILDREN_SCHEMA",
    "children_json",
    "children_sql",
]

CHILDREN_LISTED_MAX: Final = 100
"""How many children one run's detail lists (the newest)."""
CHILDREN_COUNT_MAX: Final = 10_000
"""Children are counted up to this many; past it ``count_capped`` is true."""
_CHILD_COLUMNS: Final = ("run_id", "workflow_id", "status", "started_at")
CHILDREN_SCHEMA: Final = {
    "type": "object",
    "required": ["count", "count_capped", "runs"],
    "description": f"The runs this run started: the newest {CHILDREN_LISTED_MAX} and how many there are "
    "(?parent_run_id= in /api/runs lists them all).",
    "properties": {
        "count": {"type": "integer", "minimum": 0},
        "count_capped": {"type": "boolean"},
        "runs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": list(_CHILD_COLUMNS),
                "properties": {name: {"anyOf": [{"type": "string"}, {"type": "null"}]} for name in _CHILD_COLUMNS},
            },
        },
    },
}
"""The JSON Schema of a run's ``children`` (OpenAPI)."""


def children_sql(run_id: str, space: str) -> tuple[str, list[Any], str, list[Any]]:
    """The SELECT of the listed children and the capped count, each with its parameters.

    A parent run id names a run of the child's own project: ``space`` is the parent's (``''`` for none).
    """
    scope, scope_params = " AND ifnull(project, '') = ?", [space]
    where = f"parent_run_id = ?{scope}"
    listed = f"SELECT {', '.join(_CHILD_COLUMNS)} FROM runs WHERE {where} ORDER BY started_at DESC, run_id DESC LIMIT ?"
    counted = f"SELECT count(*) FROM (SELECT 1 FROM runs WHERE {where} LIMIT ?)"
    return (
        listed,
        [run_id, *scope_params, CHILDREN_LISTED_MAX],
        counted,
        [run_id, *scope_params, CHILDREN_COUNT_MAX + 1],
    )


def children_json(rows: Iterable[ColumnsByName], count: int) -> dict[str, Any]:
    """A run's ``children`` from the rows of the listing and the capped count."""
    return {
        "count": min(count, CHILDREN_COUNT_MAX),
        "count_capped": count > CHILDREN_COUNT_MAX,
        "runs": [{name: row[name] for name in _CHILD_COLUMNS} for row in rows],
    }
