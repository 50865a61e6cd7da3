"""Runs and events per project on the PostgreSQL engine: the spelling of :mod:`.._namespace`'s keys and lookups."""

from __future__ import annotations

from typing import Final

__all__ = ["PG_NAMESPACES_SQL", "PG_SPACE", "pg_run_scope"]

PG_SPACE: Final = "coalesce({}project, '')"
"""A run's namespace in this engine's keys and lookups: its project, '' for none (``{}``: an alias and a dot)."""

PG_NAMESPACES_SQL: Final = "SELECT DISTINCT coalesce(project, '') FROM runs WHERE run_id = $1"
"""The namespaces a run id is used in (all of them, so a reader's own is found), as ``one_namespace`` reads."""


def pg_run_scope(first: int, alias: str = "") -> str:
    """``WHERE`` text matching one run: ``$first`` its id, ``$first + 1`` its namespace."""
    return f"{alias}run_id = ${first} AND {PG_SPACE.format(alias)} = ${first + 1}"
