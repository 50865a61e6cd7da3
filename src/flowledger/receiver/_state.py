"""What every route reaches through ``request.app.state.receiver``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse

from flowledger._exceptions import QueryParamError
from flowledger._run_context import project_problem
from flowledger.receiver._auth import PROJECT_SCOPE_KEY, ApiKeys
from flowledger.receiver._config import ReceiverConfig
from flowledger.receiver._metrics import Metrics
from flowledger.receiver._params import QueryParams
from flowledger.receiver._writer import Writer
from flowledger.receiver.store._protocol import Store

__all__ = [
    "RUN_PROJECT_PARAM",
    "ReceiverState",
    "error_response",
    "project_for_run",
    "project_of",
    "receiver_of",
    "run_project_of",
]

RUN_PROJECT_PARAM: Final = "project"
"""The query parameter that names the project of a run asked for by id (runs are per project)."""


@dataclass(slots=True)
class ReceiverState:
    """The receiver's parts, built by the app factory."""

    config: ReceiverConfig
    store: Store
    writer: Writer
    metrics: Metrics
    keys: ApiKeys


def receiver_of(request: Request) -> ReceiverState:
    """The receiver serving ``request``."""
    state: ReceiverState = request.app.state.receiver
    return state


def project_of(request: Request) -> str | None:
    """The project the request's API key is bound to (None when keys are off)."""
    project: str | None = request.scope.get(PROJECT_SCOPE_KEY)
    return project


def run_project_of(request: Request, *, others: Sequence[str] = ()) -> str | None:
    """The project a request about one run by id means: the API key's, else ``?project=`` (keys off; empty for
    the run without a project), else None.

    With a key, ``?project=`` may only repeat the key's project (QueryParamError otherwise, saying nothing of
    any run). The request's query parameters other than ``project`` and ``others`` are refused as unknown
    (QueryParamError).
    """
    QueryParams(request).expect((RUN_PROJECT_PARAM, *others))
    # ``?project=`` (empty) is a value: the run without a project, when a project's run shares its id.
    asked = QueryParams(request, blank_is_absent=False).text(RUN_PROJECT_PARAM)
    problem = project_problem(RUN_PROJECT_PARAM, asked) if asked else None
    if problem is not None:  # a 400, as the run listing answers it, rather than "no such run"
        raise QueryParamError(f"query parameter {problem}")
    return project_for_run(request, asked)


def project_for_run(request: Request, asked: str | None, name: str = RUN_PROJECT_PARAM) -> str | None:
    """The project of a run the request names, given the value ``asked`` of its query parameter ``name``:
    the API key's (``asked`` may only repeat it: QueryParamError), else ``asked``."""
    project = project_of(request)
    if project is not None and asked is not None and asked != project:
        raise QueryParamError(f"query parameter {name}: {asked!r} is not the project of this API key")
    return project if project is not None else asked


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error body every route uses: ``{"error": "..."}``."""
    body: dict[str, Any] = {"error": message}
    return JSONResponse(body, status_code=status, headers=headers)
