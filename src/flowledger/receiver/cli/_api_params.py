"""Options that are API query parameters, checked by the API's own rules before either source is asked.

``runs --workflow`` is ``GET /api/runs?workflow_id=``; with ``--url`` the receiver checks it (a 400 for one
longer than 256 characters), while ``--db`` would quietly find nothing. :class:`ApiText` checks an option by
the rules of the parameter it is (:mod:`flowledger.receiver._params`, where the API reads them), so a value
the API refuses is a usage error naming the option (exit 2), the same on ``--db`` and ``--url``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import click

from flowledger._run_context import project_problem
from flowledger.receiver._params import label_problem, length_problem, metric_name_problem

__all__ = ["LABEL", "METRIC_NAME", "NODE_ID", "RUN_ID", "RUN_PROJECT", "SEARCH", "WORKFLOW_ID", "ApiText", "RunId"]

_SHOWN_CHARS: Final = 40
"""How much of a refused value a message repeats."""


def _run_project(value: str) -> str | None:
    """The project of a run named by id (``?project=``): empty is the run without one, else a project name."""
    return project_problem("project", value) if value else None


class ApiText(click.ParamType):  # type: ignore[type-arg]
    """Text that is the API's query parameter ``param``: no longer than the API takes it, and ``rule``'s, if any
    (a sentence saying what is wrong, or None)."""

    name = "text"

    def __init__(self, param: str, rule: Callable[[str], str | None] | None = None) -> None:
        self.param = param
        self.rule = rule

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = str(value)
        problem = length_problem(self.param, text)
        if problem is not None:
            self.fail(f"{text[:_SHOWN_CHARS]!r}... {problem}", param, ctx)
        problem = self.rule(text) if self.rule is not None else None
        if problem is not None:
            self.fail(problem, param, ctx)
        return text


WORKFLOW_ID: Final = ApiText("workflow_id")
SEARCH: Final = ApiText("q")
METRIC_NAME: Final = ApiText("name", metric_name_problem)
NODE_ID: Final = ApiText("node_id")
LABEL: Final = ApiText("label", label_problem)
RUN_PROJECT: Final = ApiText("project", _run_project)


class RunId(click.ParamType):  # type: ignore[type-arg]
    """A run's id as a command names it (``show RUN_ID``, ``purge --run``): never empty, which no run's id is and
    which ``/api/runs/{run_id}`` cannot be asked for. Any other text is looked up: an unknown id is "no such run"
    (exit 1) from either source."""

    name = "run_id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = str(value)
        if not text:
            self.fail("it is empty: give a run's id, as flowledger runs lists them", param, ctx)
        return text


RUN_ID: Final = RunId()
