"""Runs dropped by sampling, counted per workflow, project and UTC day.

The SDK drops a sampled-out run's events and sends one ``run_sampled_out``
event instead; the projector adds it to ``sampled_out`` (never to ``runs``), so
``/metrics`` and ``GET /api/sampling`` can say how many runs each workflow
really had. The events are in the ledger: a rebuild counts them again.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["SAMPLED_OUT_SCHEMA", "SAMPLED_OUT_SQL", "SAVE_SAMPLED_OUT", "SAVE_SAMPLED_OUT_TAIL", "sampled_out_key"]

SAMPLED_OUT_SCHEMA: Final = """
-- Runs dropped by sampling (run_sampled_out events), per workflow, project ('' for none) and UTC day.
CREATE TABLE sampled_out (
    workflow_id TEXT NOT NULL,
    project     TEXT NOT NULL,
    day         TEXT NOT NULL,
    runs        INTEGER NOT NULL,
    PRIMARY KEY (workflow_id, project, day)
) WITHOUT ROWID;
"""

SAVE_SAMPLED_OUT: Final = "INSERT INTO sampled_out (workflow_id, project, day, runs)"
SAVE_SAMPLED_OUT_TAIL: Final = " ON CONFLICT (workflow_id, project, day) DO UPDATE SET runs = runs + excluded.runs"
SAMPLED_OUT_SQL: Final = (
    "SELECT workflow_id, sum(runs) FROM sampled_out WHERE (? IS NULL OR project = ?) GROUP BY workflow_id "
    "ORDER BY workflow_id"
)
"""Runs sampled out per workflow (all projects when the parameters are NULL)."""


def sampled_out_key(data: dict[str, Any], project: str | None, ts: str) -> tuple[str, str, str]:
    """The ``sampled_out`` key of a ``run_sampled_out`` event: workflow, project ('' for none), UTC day."""
    return str(data["workflow_id"]), project or "", ts[:10]
