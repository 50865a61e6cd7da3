"""Reading projections: the SQL of listings and the JSON shape of runs and nodes.

The field names are the ones CONTRACT.md fixes for ``GET /api/runs`` and
``GET /api/runs/{run_id}``; a few extra fields (``project``, ``last_seen_at``,
``stuck_reason``, and per node ``item``, ``effect``, ``idempotency_key``,
``simulated``, ``duplicate``, ``location``...) come after them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

from flowledger.receiver.store._protocol import RunQuery

__all__ = [
    "NODE_SELECT",
    "RUN_PAYLOADS_SELECT",
    "RUN_SELECT",
    "node_json",
    "run_json",
    "runs_where",
]

_RUN_FIELDS: Final = (
    "run_id",
    "workflow_id",
    "workflow_name",
    "workflow_version",
    "status",
    "trigger_type",
    "dry_run",
    "started_at",
    "completed_at",
    "duration_ms",
    "error_type",
    "error_message",
    "error_node_id",
    "cost_tokens",
    "cost_tool_calls",
    "cost_external_requests",
    "cost_usd",
    "trace_id",
    "project",
    "last_seen_at",
    "stuck_reason",
    "heartbeat_interval_s",
)
RUN_SELECT: Final = ", ".join(f"r.{name}" for name in _RUN_FIELDS)
"""Columns of ``runs r`` that :func:`run_json` reads, in its order."""

_NODE_FIELDS: Final = (
    "node_id",
    "attempt",
    "status",
    "skip_reason",
    "started_at",
    "completed_at",
    "duration_ms",
    "error_type",
    "error_message",
    "span_id",
    "item",
    "effect",
    "idempotency_key",
    "simulated",
    "duplicate",
    "location",
    "parent_span_id",
    "cost_tokens",
    "cost_tool_calls",
    "cost_external_requests",
    "cost_usd",
)
NODE_SELECT: Final = (
    ", ".join(f"n.{name}" for name in _NODE_FIELDS)
    + ", li.body -> '$.data.input', lo.body -> '$.data.output', lo.body ->> '$.data.error.stack'"
    + " FROM node_runs n LEFT JOIN ledger li ON li.seq = n.input_seq LEFT JOIN ledger lo ON lo.seq = n.output_seq"
)
"""``SELECT`` list and ``FROM`` of node attempts, payloads read from their ledger rows."""
RUN_PAYLOADS_SELECT: Final = (
    "ls.body -> '$.data.trigger_data', lf.body -> '$.data.output', ls.body -> '$.data.attributes'"
)
"""Payload columns of a run, from ``LEFT JOIN ledger ls ON ls.seq = r.input_seq`` (and ``lf`` for output)."""


def _bool(value: Any) -> bool | None:
    return None if value is None else bool(value)


def _cost(tokens: Any, tool_calls: Any, external_requests: Any, usd: Any) -> dict[str, Any] | None:
    if tokens is None and tool_calls is None and external_requests is None and usd is None:
        return None
    return {
        "tokens": tokens or 0,
        "tool_calls": tool_calls or 0,
        "external_requests": external_requests or 0,
        "usd": usd or 0.0,
    }


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def run_json(row: Sequence[Any]) -> dict[str, Any]:
    """The API shape of one run from a row selected with RUN_SELECT."""
    (
        run_id,
        workflow_id,
        workflow_name,
        workflow_version,
        status,
        trigger_type,
        dry_run,
        started_at,
        completed_at,
        duration_ms,
        error_type,
        error_message,
        error_node_id,
        tokens,
        tool_calls,
        external_requests,
        usd,
        trace_id,
        project,
        last_seen_at,
        stuck_reason,
        heartbeat_interval_s,
    ) = row[: len(_RUN_FIELDS)]
    error = None
    if error_type is not None or error_message is not None:
        error = {"type": error_type, "message": error_message, "node_id": error_node_id}
    return {
        "run_id": run_id,
        "workflow_id": workflow_id,
        "workflow_name": workflow_name,
        "workflow_version": workflow_version,
        "status": status,
        "trigger_type": trigger_type,
        "dry_run": _bool(dry_run),
        "started_at": started_at,
        "completed_at": completed_at,
        "duration_ms": duration_ms,
        "error": error,
        "cost": _cost(tokens, tool_calls, external_requests, usd),
        "trace_id": trace_id,
        "project": project,
        "last_seen_at": last_seen_at,
        "stuck_reason": stuck_reason,
        "heartbeat_interval_s": heartbeat_interval_s,
    }


def node_json(row: Sequence[Any]) -> dict[str, Any]:
    """The API shape of one node attempt from a row selected with NODE_SELECT."""
    (
        node_id,
        attempt,
        status,
        skip_reason,
        started_at,
        completed_at,
        duration_ms,
        error_type,
        error_message,
        span_id,
        item,
        effect,
        idempotency_key,
        simulated,
        duplicate,
        location,
        parent_span_id,
        tokens,
        tool_calls,
        external_requests,
        usd,
        input_text,
        output_text,
        error_stack,
    ) = row
    error = None
    if error_type is not None or error_message is not None:
        error = {"type": error_type, "message": error_message, "stack": error_stack}
    return {
        "node_id": node_id,
        "attempt": attempt,
        "status": status,
        "skip_reason": skip_reason,
        "started_at": started_at,
        "completed_at": completed_at,
        "duration_ms": duration_ms,
        "input": _loads(input_text),
        "output": _loads(output_text),
        "error": error,
        "span_id": span_id,
        "item": item,
        "effect": _bool(effect),
        "idempotency_key": idempotency_key,
        "simulated": _bool(simulated),
        "duplicate": _bool(duplicate),
        "location": _loads(location),
        "parent_span_id": parent_span_id,
        "cost": _cost(tokens, tool_calls, external_requests, usd),
    }


def runs_where(query: RunQuery) -> tuple[str, list[Any]]:
    """The WHERE clause (with its parameters) of a run listing; each filter has a covering index."""
    clauses: list[str] = []
    params: list[Any] = []
    if query.workflow_id is not None:
        clauses.append("r.workflow_id = ?")
        params.append(query.workflow_id)
    if query.status is not None:
        clauses.append("r.status = ?")
        params.append(query.status.value)
    if query.project is not None:
        clauses.append("r.project = ?")
        params.append(query.project)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params
