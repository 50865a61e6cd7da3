"""The run-context filters of ``runs`` and ``export``: ``--project``, ``--user-id``, ``--agent-id``,
``--intent``, ``--parent-run-id``, ``--since``, ``--until``.

:func:`context_options` adds them to a command and hands the command one
``context`` argument (a :class:`RunContextFilter`) instead. Each value is
checked where it enters, by the rules the wire format and the API use: a bad
one is a usage error naming the option (exit 2), on ``--db`` and ``--url``
alike.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Final, TypeVar

import click

from flowledger._run_context import context_problem, project_problem, run_id_problem
from flowledger.receiver._params import RFC3339_EXAMPLE, rfc3339_before, rfc3339_time
from flowledger.receiver.store._run_filter import FILTER_NAMES, RunContextFilter

__all__ = ["context_lines", "context_options", "parse_time"]

_SHOWN_CHILDREN: Final = 10
"""How many children ``show`` lists (``runs --parent-run-id`` lists them all)."""
R = TypeVar("R")
_HELP: Final = {
    "project": "Only runs of this project.",
    "user_id": "Only runs for this user.",
    "agent_id": "Only runs of this agent.",
    "intent": "Only runs started with this intent.",
    "parent_run_id": "Only runs started by this run (its children).",
    "since": "Only runs started at or after this RFC 3339 time (2026-01-31T08:00:00Z).",
    "until": "Only runs started before this RFC 3339 time.",
}
_CHECKS: Final[dict[str, Callable[[str, object], str | None]]] = {
    "project": project_problem,
    "parent_run_id": run_id_problem,
}


def parse_time(value: str | None, option: str, *, before: bool = False) -> str | None:
    """An RFC 3339 date-time, normalised, as the query API reads one (:func:`rfc3339_time`; with ``before``, an
    exclusive upper bound, :func:`rfc3339_before`); a usage error naming ``option`` otherwise."""
    if value is None:
        return None
    try:
        return rfc3339_before(value) if before else rfc3339_time(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an RFC 3339 date-time: YYYY-MM-DDTHH:MM:SS, an optional fraction, and Z or an "
            f"offset +HH:MM, like {RFC3339_EXAMPLE}",
            param_hint=option,
        ) from None


def _check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    name = str(param.name).removeprefix("filter_")
    if name in ("since", "until"):
        return parse_time(value, f"--{name}", before=name == "until")
    problem = _CHECKS.get(name, context_problem)(name, value)
    if problem is not None:
        raise click.BadParameter(problem)
    return value


def context_options(command: Callable[..., R]) -> Callable[..., R]:
    """Add the filters' options to a click command function that takes ``context: RunContextFilter``."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> R:
        values = {name: kwargs.pop(f"filter_{name}") for name in FILTER_NAMES}
        return command(*args, context=RunContextFilter(**values), **kwargs)

    decorated: Callable[..., R] = wrapper
    for name in reversed(FILTER_NAMES):
        flag = "--" + name.replace("_", "-")
        decorated = click.option(flag, f"filter_{name}", default=None, callback=_check, help=_HELP[name])(decorated)
    return decorated


def context_lines(run: dict[str, Any]) -> list[str]:
    """What ``show`` says of a run's context: project, user, agent, intent, parent and children."""
    lines = [
        f"{label:<6} {run[name]}"
        for label, name in (("project", "project"), ("user", "user_id"), ("agent", "agent_id"), ("intent", "intent"))
        if run.get(name)
    ]
    if run.get("parent_run_id"):
        lines.append(f"parent {run['parent_run_id']} (flowledger show {run['parent_run_id']})")
    children = run.get("children") or {}
    if children.get("count"):
        count = f"at least {children['count']:,}" if children.get("count_capped") else str(children["count"])
        lines.append(f"children {count}; the newest:")
        lines += [
            f"  {child['run_id']}  {child.get('workflow_id') or ''}  {child.get('status') or ''}"
            for child in children.get("runs", [])[:_SHOWN_CHILDREN]
        ]
        if children["count"] > _SHOWN_CHILDREN:
            lines.append(f"  all of them: flowledger runs --parent-run-id {run['run_id']}")
    return lines
