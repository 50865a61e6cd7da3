"""diff_runs on runs as the API answers them: verdicts, the first divergence, mapped nodes taken together."""

from __future__ import annotations

from typing import Any

from flowledger.receiver._run_diff import diff_runs


def _attempt(
    node_id: str, input_: Any, output: Any, *, status: str = "succeeded", item: int | None = None
) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "status": status,
        "item": item,
        "input": input_,
        "output": output,
        "duration_ms": 10.0,
        "cost": {"tokens": 0, "tool_calls": 0, "external_requests": 0, "usd": 0.5},
    }


def _run(run_id: str, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "status": "succeeded",
        "duration_ms": 100.0,
        "input": {"q": 1},
        "cost": None,
        "nodes": nodes,
    }


def test_same_input_different_output_is_told_apart_and_is_the_first_divergence() -> None:
    """Two runs equal up to `score`, whose output differs on the same input."""
    a = _run("a", [_attempt("fetch", 1, {"x": 1}), _attempt("score", {"x": 1}, {"s": 0.5})])
    b = _run("b", [_attempt("fetch", 1, {"x": 1}), _attempt("score", {"x": 1}, {"s": 0.7})])
    diff = diff_runs(a, b)
    assert diff["first_divergence"] == {"node_id": "score", "verdict": "same_input_different_output"}
    score = diff["nodes"][1]
    assert score["input_same"] is True
    assert score["output_changes"] == [{"path": "$.s", "kind": "changed", "a": 0.5, "b": 0.7}]
    assert score["cost_usd"] == {"a": 0.5, "b": 0.5, "delta": 0.0}


def test_a_retried_node_is_compared_at_its_success_and_a_mapped_node_by_its_items() -> None:
    """A failed then succeeded attempt counts as succeeded; a mapped node's items compare as one list."""
    a = _run(
        "a",
        [
            _attempt("price", 1, None, status="failed"),
            _attempt("price", 1, 10),
            _attempt("stock", 0, "in", item=0),
            _attempt("stock", 1, "in", item=1),
        ],
    )
    b = _run("b", [_attempt("price", 1, 10), _attempt("stock", 0, "in", item=0), _attempt("stock", 1, "out", item=1)])
    nodes = {n["node_id"]: n for n in diff_runs(a, b)["nodes"]}
    assert nodes["price"]["verdict"] == "same"
    assert nodes["stock"]["verdict"] == "same_input_different_output"
    assert nodes["stock"]["output_changes"] == [{"path": "$[1]", "kind": "changed", "a": "in", "b": "out"}]


def _of(run: dict[str, Any], workflow_id: str | None, definition: str | None) -> dict[str, Any]:
    return {**run, "workflow_id": workflow_id, "definition_sha256": definition}


def test_runs_of_different_workflows_are_not_said_to_share_a_definition() -> None:
    """Same node ids, different workflows: same_definition is False and same_workflow says they differ."""
    nodes = [_attempt("fetch", 1, {"x": 1})]
    diff = diff_runs(_of(_run("a", nodes), "orders", None), _of(_run("b", nodes), "refunds", None))
    assert diff["same_definition"] is False
    assert diff["same_workflow"] is False
    diff = diff_runs(_of(_run("a", nodes), "orders", "d" * 64), _of(_run("b", nodes), "refunds", "d" * 64))
    assert (diff["same_definition"], diff["same_workflow"]) == (False, False)


def test_a_definition_is_the_same_only_when_both_runs_carry_the_same_hash() -> None:
    """No hash on either side (every SDK run) or on one side is unknown (None); two hashes compare."""
    nodes = [_attempt("fetch", 1, {"x": 1})]
    cases = [(None, None, None), ("d" * 64, None, None), ("d" * 64, "d" * 64, True), ("d" * 64, "e" * 64, False)]
    for hash_a, hash_b, same in cases:
        diff = diff_runs(_of(_run("a", nodes), "orders", hash_a), _of(_run("b", nodes), "orders", hash_b))
        assert diff["same_definition"] is same, (hash_a, hash_b)
        assert diff["same_workflow"] is True
    unnamed = diff_runs(_of(_run("a", nodes), None, None), _of(_run("b", nodes), "orders", None))
    assert (unnamed["same_definition"], unnamed["same_workflow"]) == (None, None)


def test_a_mapped_node_cost_is_added_exactly() -> None:
    """Three items at $0.1 cost $0.3, not 0.30000000000000004; deltas are exact too."""

    def item(index: int, usd: float) -> dict[str, Any]:
        attempt = _attempt("each", index, index, item=index)
        return {**attempt, "cost": {**attempt["cost"], "usd": usd}}

    a = _run("a", [item(i, 0.1) for i in range(3)])
    b = _run("b", [item(i, 0.2) for i in range(3)])
    (each,) = diff_runs(a, b)["nodes"]
    assert each["cost_usd"] == {"a": 0.3, "b": 0.6, "delta": 0.3}
