"""The run-context filters of a request (``project``, ``user_id``, ``agent_id``, ``intent``, ``parent_run_id``,
``since``, ``until``), read by one set of rules for ``/api/runs``, ``/api/export`` and the viewer's run list.

Each value is checked as the wire format bounds it (:mod:`flowledger._run_context`): a filter that
no run can match (an empty user, a project name with a space, a parent that is not a run id, a time
that is not RFC 3339) is a 400 naming the parameter, not an empty answer. A time range that ends
before it starts is an empty one.
"""

from __future__ import annotations

from typing import Any, Final

from flowledger._exceptions import QueryParamError
from flowledger._run_context import (
    CONTEXT_MAX_CHARS,
    PROJECT_PATTERN,
    RUN_ID_PATTERN,
    context_problem,
    project_problem,
    run_id_problem,
)
from flowledger.receiver._params import QueryParams
from flowledger.receiver.store._run_filter import CONTEXT_COLUMNS, FILTER_NAMES, RunContextFilter

__all__ = ["CONTEXT_FIELD_PARAMS", "CONTEXT_PARAMS", "CONTEXT_PARAM_SCHEMAS", "context_filter"]

CONTEXT_PARAMS: Final = FILTER_NAMES
"""The query parameters :func:`context_filter` reads."""
CONTEXT_FIELD_PARAMS: Final = CONTEXT_COLUMNS
"""Those of them that name a run field (not ``since``/``until``): what the viewer adds to its own filters."""
_TIME: Final = {"type": "string", "format": "date-time", "maxLength": 40}
CONTEXT_PARAM_SCHEMAS: Final[list[dict[str, Any]]] = [
    {
        "name": "project",
        "in": "query",
        "description": "Runs of this project (within the API key's own).",
        "schema": {"type": "string", "pattern": f"^{PROJECT_PATTERN.pattern}$"},
    },
    *(
        {
            "name": name,
            "in": "query",
            "description": description,
            "schema": {"type": "string", "minLength": 1, "maxLength": CONTEXT_MAX_CHARS},
        }
        for name, description in (
            ("user_id", "Runs for this user."),
            ("agent_id", "Runs of this agent."),
            ("intent", "Runs started with this intent."),
        )
    ),
    {
        "name": "parent_run_id",
        "in": "query",
        "description": "Runs started by this run (its children).",
        "schema": {"type": "string", "pattern": f"^{RUN_ID_PATTERN.pattern}$"},
    },
    {"name": "since", "in": "query", "description": "Runs started at or after this time (RFC 3339).", "schema": _TIME},
    {"name": "until", "in": "query", "description": "Runs started before this time (RFC 3339).", "schema": _TIME},
]
"""The OpenAPI parameters of these filters."""


def _checked(params: QueryParams, name: str) -> str | None:
    value = params.text(name)
    if value is None:
        return None
    if name == "project":
        problem = project_problem(name, value)
    elif name == "parent_run_id":
        problem = run_id_problem(name, value)
    else:
        problem = context_problem(name, value)
    if problem is not None:
        raise QueryParamError(f"query parameter {problem}")
    return value


def context_filter(params: QueryParams, *, times: bool = True) -> RunContextFilter:
    """The filters the request gives; ``times``: also ``since`` and ``until`` (the viewer reads its own)."""
    since = params.time("since") if times else None
    until = params.time("until", before=True) if times else None
    return RunContextFilter(
        project=_checked(params, "project"),
        user_id=_checked(params, "user_id"),
        agent_id=_checked(params, "agent_id"),
        intent=_checked(params, "intent"),
        parent_run_id=_checked(params, "parent_run_id"),
        since=since,
        until=until,
    )
