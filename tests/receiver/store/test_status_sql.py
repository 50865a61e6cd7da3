"""Statuses written into the store's SQL come from RunStatus, never from a quoted literal."""

from __future__ import annotations

import ast
from pathlib import Path

import flowledger.receiver.store
from flowledger._wire import RunStatus

STORE = Path(flowledger.receiver.store.__file__).parent
# Migrations keep the SQL each schema version was created with (a partial index names its status there).
_AS_CREATED = {"_migrations.py"}


def _quoted_statuses(path: Path) -> list[str]:
    quoted = {f"'{status.value}'" for status in RunStatus}
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            found += [literal for literal in quoted if literal in node.value]
    return found


def test_store_sql_names_statuses_through_run_status() -> None:
    """No store module (migrations aside) writes a run status as a quoted SQL literal in its source."""
    offenders = {
        path.name: found
        for path in sorted(STORE.glob("*.py"))
        if path.name not in _AS_CREATED and (found := _quoted_statuses(path))
    }
    assert offenders == {}


def test_sql_built_from_run_status_still_names_the_status() -> None:
    """The sweep's SQL, built from RunStatus, selects running runs through the partial index as before."""
    from flowledger.receiver.store._sqlite import SWEEP_SQL

    assert "INDEXED BY runs_alive WHERE status = 'running' AND last_seen_at < ?" in SWEEP_SQL
