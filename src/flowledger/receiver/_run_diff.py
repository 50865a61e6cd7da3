"""Comparing two runs node by node (``flowledger diff``, ``GET /api/diff``, the viewer's diff page).

Each node is taken at its outcome: the attempt that succeeded, else its
last attempt (a mapped node: its items' attempts together). Nodes are
listed in the order they started in run A, then those only run B has. For
each node the comparison says whether it is in both runs or was added or
removed (between definition versions), its status in each, the duration
and cost deltas (B minus A), and whether its input and output are the same;
where they differ, a structural JSON diff (:mod:`._json_diff`) of the
recorded payloads says where. The *first divergence* is the first node, in
run A's order, whose input, output or status differs, or that only one run has.

Runs of two workflows can still be compared (their nodes match by id), but
the answer says so: ``same_workflow`` is False, and ``same_definition`` is
True only when both runs carry the same definition hash (``None``: unknown,
as for every run the SDK recorded without one). Costs are added and
subtracted in whole nano-dollars (:mod:`flowledger._money`).

Payloads are compared as recorded: the redacted, 4 KiB previews (a cut
payload compares by its preview and marker).
"""

from __future__ import annotations

import enum
from typing import Any, Final

from flowledger._money import nanos_to_usd, usd_to_nanos
from flowledger.receiver._json_diff import json_diff

__all__ = ["NodeVerdict", "diff_runs"]

_RUN_KEYS: Final = (
    "run_id",
    "workflow_id",
    "workflow_version",
    "status",
    "started_at",
    "duration_ms",
    "definition_sha256",
    "resumed_from",
)


class NodeVerdict(enum.StrEnum):
    """How one node compares between the two runs."""

    SAME = "same"
    STATUS_CHANGED = "status_changed"
    DIFFERENT_INPUT = "different_input"
    SAME_INPUT_DIFFERENT_OUTPUT = "same_input_different_output"
    ADDED = "added"
    """Only run B has it."""
    REMOVED = "removed"
    """Only run A has it."""


def _usd(record: dict[str, Any] | None) -> float | None:
    cost = (record or {}).get("cost")
    return None if cost is None else cost.get("usd")


def _delta(a: float | None, b: float | None) -> dict[str, Any]:
    return {"a": a, "b": b, "delta": None if a is None or b is None else round(b - a, 9)}


def _usd_delta(a: float | None, b: float | None) -> dict[str, Any]:
    """:func:`_delta` of two amounts of money, subtracted in nano-dollars."""
    delta = None if a is None or b is None else nanos_to_usd(usd_to_nanos(b) - usd_to_nanos(a))
    return {"a": a, "b": b, "delta": delta}


def _same(a: object, b: object) -> bool | None:
    """Whether two recorded values are equal; None (unknown) when either run did not record one."""
    return None if a is None or b is None else a == b


def _same_definition(a: dict[str, Any], b: dict[str, Any]) -> bool | None:
    """True only for two runs carrying the same definition hash; False for two workflows; else unknown."""
    if _same(a.get("workflow_id"), b.get("workflow_id")) is False:
        return False
    return _same(a.get("definition_sha256"), b.get("definition_sha256"))


def _outcomes(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per node id, in start order: the attempt that stands for the node."""
    out: dict[str, dict[str, Any]] = {}
    items: dict[str, list[dict[str, Any]]] = {}
    for attempt in run.get("nodes") or []:
        node_id = attempt.get("node_id")
        if node_id is None:
            continue
        if attempt.get("item") is not None:
            items.setdefault(node_id, []).append(attempt)
            out.setdefault(node_id, attempt)
            continue
        current = out.get(node_id)
        if current is None or current.get("status") != "succeeded":
            out[node_id] = attempt
    for node_id, attempts in items.items():  # a mapped node: its items, in item order
        by_item: dict[int, dict[str, Any]] = {}
        for attempt in attempts:
            index = int(attempt["item"])
            if index not in by_item or by_item[index].get("status") != "succeeded":
                by_item[index] = attempt
        ordered = [by_item[i] for i in sorted(by_item)]
        statuses = {a.get("status") for a in ordered}
        status = "succeeded" if statuses == {"succeeded"} else "failed" if "failed" in statuses else "skipped"
        durations = [a.get("duration_ms") or 0.0 for a in ordered]
        out[node_id] = {
            "node_id": node_id,
            "status": status,
            "duration_ms": max(durations) if durations else None,
            "input": [a.get("input") for a in ordered],
            "output": [a.get("output") for a in ordered],
            "cost": {"usd": nanos_to_usd(sum(usd_to_nanos(_usd(a) or 0) for a in ordered))},
        }
    return out


def _node(node_id: str, a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "node_id": node_id,
        "in": "both" if a and b else "a" if a else "b",
        "status": {"a": (a or {}).get("status"), "b": (b or {}).get("status")},
        "duration_ms": _delta((a or {}).get("duration_ms"), (b or {}).get("duration_ms")),
        "cost_usd": _usd_delta(_usd(a), _usd(b)),
        "input_same": None,
        "output_same": None,
        "input_changes": [],
        "output_changes": [],
    }
    if a is None:
        entry["verdict"] = NodeVerdict.ADDED.value
        return entry
    if b is None:
        entry["verdict"] = NodeVerdict.REMOVED.value
        return entry
    input_changes = json_diff(a.get("input"), b.get("input"))
    output_changes = json_diff(a.get("output"), b.get("output"))
    entry["input_same"] = not input_changes
    entry["output_same"] = not output_changes
    entry["input_changes"] = [c.as_json() for c in input_changes]
    entry["output_changes"] = [c.as_json() for c in output_changes]
    if a.get("status") != b.get("status"):
        verdict = NodeVerdict.STATUS_CHANGED
    elif input_changes:
        verdict = NodeVerdict.DIFFERENT_INPUT
    elif output_changes:
        verdict = NodeVerdict.SAME_INPUT_DIFFERENT_OUTPUT
    else:
        verdict = NodeVerdict.SAME
    entry["verdict"] = verdict.value
    return entry


def diff_runs(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Compare run ``a`` with run ``b`` (each as ``GET /api/runs/{id}`` answers it, nodes included)."""
    nodes_a, nodes_b = _outcomes(a), _outcomes(b)
    order = list(nodes_a) + [n for n in nodes_b if n not in nodes_a]
    nodes = [_node(node_id, nodes_a.get(node_id), nodes_b.get(node_id)) for node_id in order]
    first = next((n for n in nodes if n["verdict"] != NodeVerdict.SAME.value), None)
    input_changes = json_diff(a.get("input"), b.get("input"))
    return {
        "a": {key: a.get(key) for key in _RUN_KEYS},
        "b": {key: b.get(key) for key in _RUN_KEYS},
        "same_definition": _same_definition(a, b),
        "same_workflow": _same(a.get("workflow_id"), b.get("workflow_id")),
        "status_changed": a.get("status") != b.get("status"),
        "duration_ms": _delta(a.get("duration_ms"), b.get("duration_ms")),
        "cost_usd": _usd_delta(_usd(a), _usd(b)),
        "input_same": not input_changes,
        "input_changes": [c.as_json() for c in input_changes],
        "first_divergence": None if first is None else {"node_id": first["node_id"], "verdict": first["verdict"]},
        "added": [n["node_id"] for n in nodes if n["verdict"] == NodeVerdict.ADDED.value],
        "removed": [n["node_id"] for n in nodes if n["verdict"] == NodeVerdict.REMOVED.value],
        "nodes": nodes,
    }
