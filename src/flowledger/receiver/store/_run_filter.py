"""Narrowing a run listing by the run's context and its start time: one set of conditions for every reader.

``GET /api/runs``, ``GET /api/export``, the CLI's ``runs`` and ``export``
and the viewer's run list all take the same filters: ``project``,
``user_id``, ``agent_id``, ``intent``, ``parent_run_id`` (each an equality
on a column of ``runs`` with its own newest-first index) and ``since`` /
``until`` (a range of the start time, which every such index is ordered
by). The project asked for narrows within the project of an API key, never
widens it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Final

__all__ = ["CONTEXT_COLUMNS", "FILTER_NAMES", "RunContextFilter"]

CONTEXT_COLUMNS: Final = ("project", "user_id", "agent_id", "intent", "parent_run_id")
"""The run fields a listing can be narrowed to one value of (each a column of ``runs``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunContextFilter:
    """Runs of one project, user, agent, intent or parent run, started in a time range (all optional)."""

    project: str | None = None
    """The project asked for (within the API key's project, when keys are on)."""
    user_id: str | None = None
    agent_id: str | None = None
    intent: str | None = None
    parent_run_id: str | None = None
    """Runs started by this run: its children."""
    since: str | None = None
    """Runs started at or after this normalised timestamp."""
    until: str | None = None
    """Runs started before this normalised timestamp."""

    def conditions(self, prefix: str = "r.") -> tuple[list[str], list[Any]]:
        """SQL conditions (to be joined with AND) on ``runs`` columns prefixed by ``prefix``, and their parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        for column in CONTEXT_COLUMNS:
            value = getattr(self, column)
            if value is not None:
                clauses.append(f"{prefix}{column} = ?")
                params.append(value)
        if self.since is not None:
            clauses.append(f"{prefix}started_at >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append(f"{prefix}started_at < ?")
            params.append(self.until)
        return clauses, params

    def as_params(self) -> dict[str, str]:
        """The filters given, as the query parameters of ``GET /api/runs`` (for a client of the API)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))


FILTER_NAMES: Final = tuple(f.name for f in fields(RunContextFilter))
"""The query parameters (and CLI options, with dashes) of these filters."""
