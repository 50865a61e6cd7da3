"""Scheduler invariants over random DAGs (Hypothesis), on the runtime specs directly.

For any DAG whose nodes succeed or fail at random (some tolerating failure):
every node ends exactly once as succeeded, failed or skipped; a node is
skipped exactly when one of its needs did not succeed; no node starts before
all its needs ended; the run fails exactly when an intolerant node failed,
and then names the first such failure.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from flowledger._exceptions import WorkflowFailed
from flowledger.testing import capture_events
from flowledger.workflow import Call, Node, OnError, Workflow, execute

OK = Call("tests.workflow.nodes", "echo")
BAD = Call("tests.workflow.nodes", "boom")


@st.composite
def dags(draw: st.DrawFn) -> tuple[Workflow, dict[str, bool], dict[str, bool]]:
    count = draw(st.integers(min_value=1, max_value=9))
    fails: dict[str, bool] = {}
    tolerant: dict[str, bool] = {}
    nodes: list[Node] = []
    for index in range(count):
        node_id = f"n{index}"
        earlier = [f"n{i}" for i in range(index)]
        needs = tuple(draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3))) if earlier else ()
        fails[node_id] = draw(st.integers(min_value=0, max_value=3)) == 0  # one node in four fails
        tolerant[node_id] = draw(st.booleans())
        nodes.append(
            Node(
                node_id,
                call=BAD if fails[node_id] else OK,
                needs=needs,
                on_error=OnError.CONTINUE if tolerant[node_id] else OnError.FAIL,
            )
        )
    order = draw(st.permutations(nodes))  # declaration order must not matter
    return Workflow(id="prop", nodes=tuple(order), output=nodes[-1].id), fails, tolerant


@settings(max_examples=60, deadline=None)
@given(case=dags())
def test_random_dags_keep_the_scheduling_invariants(case: tuple[Workflow, dict[str, bool], dict[str, bool]]) -> None:
    """Statuses, skips, ordering and the run's outcome follow the rules for any DAG."""
    workflow, fails, tolerant = case
    by_id = {n.id: n for n in workflow.nodes}
    with capture_events() as events:
        try:
            asyncio.run(execute(workflow, 1))
            raised: WorkflowFailed | None = None
        except WorkflowFailed as exc:
            raised = exc
    finished: dict[str, list[dict[str, Any]]] = {}
    first_event: dict[str, int] = {}
    ended_at: dict[str, int] = {}
    for position, event in enumerate(events.all):
        node_id = event["data"].get("node_id")
        if node_id is None:
            continue
        first_event.setdefault(node_id, position)
        if event["kind"] == "node_finished":
            finished.setdefault(node_id, []).append(event["data"])
            ended_at[node_id] = position
    expected: dict[str, str] = {}
    for node in _topological(workflow):
        if any(expected[need] != "succeeded" for need in node.needs):
            expected[node.id] = "skipped"
        else:
            expected[node.id] = "failed" if fails[node.id] else "succeeded"
    assert {n: [d["status"] for d in finished[n]] for n in finished} == {n: [s] for n, s in expected.items()}
    for node_id, node in by_id.items():
        for need in node.needs:
            assert ended_at[need] < first_event[node_id]
    intolerant_failures = [n for n, s in expected.items() if s == "failed" and not tolerant[n]]
    run = events.runs()[0]["data"]
    if intolerant_failures:
        assert raised is not None
        assert run["status"] == "failed"
        assert run["error"]["node_id"] in intolerant_failures
        assert raised.node_id == run["error"]["node_id"]
    else:
        assert raised is None
        assert run["status"] == "succeeded"


def _topological(workflow: Workflow) -> list[Node]:
    done: set[str] = set()
    out: list[Node] = []
    pending = list(workflow.nodes)
    while pending:
        for node in pending:
            if all(need in done for need in node.needs):
                out.append(node)
                done.add(node.id)
                pending.remove(node)
                break
    return out
