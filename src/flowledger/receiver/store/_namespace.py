"""Which run a run id names: runs and events are per project.

A run is ``(project, run_id)`` and an event ``(project, event_id)``: the same
id used in two projects is two runs, and one project never sees, blocks or
learns about another's. In every key and lookup a run without a project is
the namespace ``''`` (a project name is never empty), written
``ifnull(project, '')`` so that SQLite's unique indexes, which let NULLs
repeat, still hold one row per key.

A reader bound to a project (an API key's) looks in that namespace only. A
reader without one (API keys off) names a run by its id alone; when that id
is used in several projects the answer is :class:`AmbiguousRunError`, never
one of them picked silently: ask again with the project.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from flowledger._exceptions import AmbiguousRunError

__all__ = ["NAMESPACES_SQL", "ambiguous_run", "namespace_of", "one_namespace", "run_key", "run_scope"]

NAMESPACES_SQL: Final = "SELECT DISTINCT ifnull(project, '') FROM runs WHERE run_id = ?"
"""The namespaces a run id is used in: all of them, so that a reader's own is found however many others use it."""


def run_key(project: str | None, run_id: str) -> str:
    """One string naming a run, for the maps of a fold: its project's namespace, a newline, its id.

    A project name never holds a newline (the wire format's pattern), so the first one ends it.
    """
    return f"{project or ''}\n{run_id}"


def namespace_of(project: str | None) -> str:
    """The key form of a project: '' for none."""
    return project or ""


def run_scope(alias: str = "") -> str:
    """``WHERE`` text matching one run (parameters: its run id and :func:`namespace_of` its project)."""
    return f"{alias}run_id = ? AND ifnull({alias}project, '') = ?"


def one_namespace(run_id: str, project: str | None, found: Iterable[Any]) -> str | None:
    """The namespace a read of ``run_id`` means, from the rows of :data:`NAMESPACES_SQL`; None for no run.

    ``project`` (the reader's, when it has one) must be among them. Without one, a run id used in
    several projects raises AmbiguousRunError.
    """
    spaces = [str(row[0]) for row in found]
    if project is not None:
        return project if project in spaces else None
    if len(spaces) > 1:
        raise ambiguous_run(run_id)
    return spaces[0] if spaces else None


def ambiguous_run(run_id: str) -> AmbiguousRunError:
    """The error for a read or purge without a project of a run id used in several projects."""
    return AmbiguousRunError(
        f"run id {run_id!r} is used in more than one project; name the project "
        "(the query parameter project=NAME, or the CLI's --project NAME; an empty name for the run without one)"
    )
