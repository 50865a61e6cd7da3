"""The runtime behind generated modules: scheduling, retries, timeouts, skips, effects, limits.

Each test generates a module from a small definition, runs it in-process and
asserts on the events the run emitted (``flowledger.testing``).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from types import ModuleType
from typing import Any

import pytest

from flowledger import RunAborted
from flowledger._exceptions import WorkflowFailed
from flowledger._wire import parse_ts
from flowledger.testing import CapturedEvents
from flowledger.workflow import _host
from tests.workflow import nodes

Build = Callable[..., ModuleType]


def _interval(event: dict[str, Any]) -> tuple[datetime, datetime]:
    start = parse_ts(event["data"]["started_at"])
    return start, start + timedelta(milliseconds=event["data"]["duration_ms"])


def _max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda p: (p[0], p[1]))
    best = current = 0
    for _, step in points:
        current += step
        best = max(best, current)
    return best


def _statuses(events: CapturedEvents, node_id: str) -> list[str]:
    return [e["data"]["status"] for e in events.nodes(node_id)]


async def _cancelled_while_running(module: ModuleType) -> None:
    """Start a run of ``module``, cancel it 0.1 s in, and check that the caller sees it cancelled."""
    task = asyncio.create_task(module.run(None))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def _input_of(events: CapturedEvents, node_id: str) -> Any:
    """The recorded input of a node's first attempt (node_started, or node_finished for a short one)."""
    for event in events:
        data = event["data"]
        if event["kind"] in ("node_started", "node_finished") and data["node_id"] == node_id and "input" in data:
            return data["input"]
    raise AssertionError(f"no input recorded for {node_id}")


def test_nodes_whose_needs_are_met_run_concurrently(build: Build, events: CapturedEvents) -> None:
    """A sync and an async node that share a need overlap in time; the join sees both outputs."""
    module = build(
        """
        flowledger: 1
        workflow: {id: fanout}
        nodes:
          - {id: start, call: "tests.workflow.nodes:echo"}
          - {id: left, call: "tests.workflow.nodes:sleepy", needs: [start], with: {delay_s: 0.3}}
          - {id: right, call: "tests.workflow.nodes:asleepy", needs: [start], with: {delay_s: 0.3}}
          - {id: join, call: "tests.workflow.nodes:total", needs: [left, right]}
        """
    )
    assert asyncio.run(module.run(2)) == 4
    left, right = events.nodes("left")[0], events.nodes("right")[0]
    assert _max_overlap([_interval(left), _interval(right)]) == 2
    assert _input_of(events, "join") == {"left": 2, "right": 2}


def test_inputs_follow_needs(build: Build, events: CapturedEvents) -> None:
    """No needs: the payload; one need: its output; kwargs from `with` are passed by name."""
    module = build(
        """
        flowledger: 1
        workflow: {id: inputs}
        nodes:
          - {id: first, call: "tests.workflow.nodes:double"}
          - {id: second, call: "tests.workflow.nodes:echo", needs: [first], with: {tag: x, n: [1, 2]}}
        """
    )
    assert asyncio.run(module.run(21)) == {"input": 42, "tag": "x", "n": [1, 2]}
    assert _input_of(events, "first") == 21
    assert _input_of(events, "second") == 42


def test_builtin_names_and_soft_keywords_are_node_ids(build: Build, events: CapturedEvents) -> None:
    """`input`, `sum`, `match` and `type` are ids like any other: an id is only ever a string in the module."""
    module = build(
        """
        flowledger: 1
        workflow: {id: names}
        output: sum
        nodes:
          - {id: input, call: "tests.workflow.nodes:double"}
          - {id: match, call: "tests.workflow.nodes:double", needs: [input]}
          - {id: type, call: "tests.workflow.nodes:echo", needs: [input]}
          - {id: sum, call: "tests.workflow.nodes:total", needs: [match, type]}
        """
    )
    assert asyncio.run(module.run(5)) == 30
    assert _input_of(events, "sum") == {"match": 20, "type": 10}
    assert [e["data"]["status"] for e in events.nodes("input") if e["kind"] == "node_finished"] == ["succeeded"]


def test_retries_record_every_attempt(build: Build, events: CapturedEvents) -> None:
    """A node failing twice then succeeding shows three attempts, numbered, with the errors."""
    module = build(
        """
        flowledger: 1
        workflow: {id: retrying}
        nodes:
          - id: flaky
            call: "tests.workflow.nodes:flaky"
            with: {key: retries-ok, failures: 2}
            retry: {attempts: 3, backoff_s: 0.01}
        """
    )
    assert asyncio.run(module.run("x")) == "x"
    finished = events.nodes("flaky")
    assert [e["data"]["attempt"] for e in finished] == [1, 2, 3]
    assert [e["data"]["status"] for e in finished] == ["failed", "failed", "succeeded"]
    assert finished[0]["data"]["error"]["type"] == "ConnectionError"
    assert events.runs()[0]["data"]["status"] == "succeeded"
    retries = [e["data"].get("cost", {}).get("breakdown", {}).get("penalty:retry") for e in finished]
    assert retries == [None, {"count": 1, "usd_nanos": 0}, {"count": 1, "usd_nanos": 0}]
    assert events.runs()[0]["data"]["cost"]["breakdown"]["penalty:retry"]["count"] == 2


def test_failure_skips_dependents_and_lets_other_branches_finish(build: Build, events: CapturedEvents) -> None:
    """After its retries a failing node fails the run, names itself, skips dependents; a sibling branch finishes."""
    module = build(
        """
        flowledger: 1
        workflow: {id: failing}
        output: after
        nodes:
          - {id: bad, call: "tests.workflow.nodes:flaky", with: {key: retries-spent, failures: 9}, retry: {attempts: 2}}
          - {id: after, call: "tests.workflow.nodes:echo", needs: [bad]}
          - {id: later, call: "tests.workflow.nodes:echo", needs: [after]}
          - {id: other, call: "tests.workflow.nodes:sleepy", with: {delay_s: 0.1}}
        """
    )
    with pytest.raises(WorkflowFailed) as info:
        asyncio.run(module.run(1))
    assert info.value.node_id == "bad"
    assert isinstance(info.value.__cause__, ConnectionError)
    assert _statuses(events, "bad") == ["failed", "failed"]
    assert _statuses(events, "after") == ["skipped"]
    assert events.nodes("after")[0]["data"]["skip_reason"] == "needs `bad`, which failed"
    assert events.nodes("later")[0]["data"]["skip_reason"] == "needs `after`, which was skipped"
    assert _statuses(events, "other") == ["succeeded"]
    run = events.runs()[0]["data"]
    assert run["status"] == "failed"
    assert run["error"]["node_id"] == "bad"
    assert info.value.run_id == events.runs()[0]["run_id"]


def test_timeout_applies_per_attempt(build: Build, events: CapturedEvents) -> None:
    """An attempt running past timeout_s fails with NodeTimeout; each retry gets its own timeout."""
    module = build(
        """
        flowledger: 1
        workflow: {id: slow}
        nodes:
          - id: slow
            call: "tests.workflow.nodes:asleepy"
            with: {delay_s: 5}
            timeout_s: 0.05
            retry: {attempts: 2}
        """
    )
    with pytest.raises(WorkflowFailed):
        asyncio.run(module.run(None))
    errors = [e["data"]["error"] for e in events.nodes("slow")]
    assert [e["type"] for e in errors] == ["flowledger.NodeTimeout"] * 2
    assert "timeout_s of 0.05 s" in errors[0]["message"]
    penalties = [{k: v["count"] for k, v in e["data"]["cost"]["breakdown"].items()} for e in events.nodes("slow")]
    assert penalties == [{"penalty:timeout": 1}, {"penalty:retry": 1, "penalty:timeout": 1}]


def test_when_false_skips_the_node_and_its_dependents(build: Build, events: CapturedEvents) -> None:
    """A false `when` records a skip with the predicate's name; dependents are skipped too."""
    module = build(
        """
        flowledger: 1
        workflow: {id: conditional}
        output: start
        nodes:
          - {id: start, call: "tests.workflow.nodes:echo"}
          - {id: gated, call: "tests.workflow.nodes:double", needs: [start], when: "tests.workflow.nodes:is_positive"}
          - {id: downstream, call: "tests.workflow.nodes:echo", needs: [gated]}
        """
    )
    assert asyncio.run(module.run(-1)) == -1
    assert events.nodes("gated")[0]["data"]["skip_reason"] == "when `tests.workflow.nodes:is_positive` returned False"
    assert _statuses(events, "downstream") == ["skipped"]
    assert events.runs()[0]["data"]["status"] == "succeeded"
    events.clear()
    assert asyncio.run(module.run(5)) == 5
    assert _statuses(events, "gated") == ["succeeded"]


def test_map_runs_each_item_with_bounded_concurrency(build: Build, events: CapturedEvents) -> None:
    """A mapped node makes one attempt per item, at most max_concurrency at once; output keeps item order."""
    module = build(
        """
        flowledger: 1
        workflow: {id: mapping}
        nodes:
          - {id: each, call: "tests.workflow.nodes:sleepy", with: {delay_s: 0.3}, map: {max_concurrency: 2}}
        """
    )
    assert asyncio.run(module.run([5, 6, 7, 8, 9])) == [5, 6, 7, 8, 9]
    finished = events.nodes("each")
    assert sorted(e["data"]["item"] for e in finished) == [0, 1, 2, 3, 4]
    assert _max_overlap([_interval(e) for e in finished]) == 2


def test_map_fails_the_node_when_an_item_fails(build: Build, events: CapturedEvents) -> None:
    """One failing item fails the mapped node (and the run); the item's error is recorded with its index."""
    module = build(
        """
        flowledger: 1
        workflow: {id: mapfail}
        nodes:
          - {id: each, call: "tests.workflow.nodes:item_boom", map: {max_concurrency: 1}}
        """
    )
    with pytest.raises(WorkflowFailed):
        asyncio.run(module.run([1, 2, 3, 4]))
    by_item = {e["data"]["item"]: e["data"] for e in events.nodes("each")}
    assert by_item[2]["status"] == "failed"
    assert by_item[2]["error"]["message"] == "item 3 is bad"
    assert by_item[3]["status"] == "skipped"
    assert by_item[3]["skip_reason"] == "an earlier item failed"


def test_map_needs_a_list(build: Build, events: CapturedEvents) -> None:
    """A mapped node whose input is not a list fails with a message saying so."""
    module = build(
        """
        flowledger: 1
        workflow: {id: mapnotlist}
        nodes:
          - {id: each, call: "tests.workflow.nodes:double", map: {}}
        """
    )
    with pytest.raises(WorkflowFailed):
        asyncio.run(module.run({"not": "a list"}))
    assert "must be a list, not dict" in events.nodes("each")[0]["data"]["error"]["message"]


def test_effects_are_simulated_in_dry_runs(build: Build, events: CapturedEvents) -> None:
    """In a dry run an effect node is recorded as simulated and its function never runs."""
    module = build(
        """
        flowledger: 1
        workflow: {id: effects}
        nodes:
          - {id: act, call: "tests.workflow.nodes:counted_effect", with: {key: effect-dry}, effect: true}
        """
    )
    assert asyncio.run(module.run(1, dry_run=True)) is None
    assert nodes.calls("effect-dry") == 0
    data = events.nodes("act")[0]["data"]
    assert data["simulated"] is True
    assert data["effect"] is True
    assert events.of_kind("run_started")[0]["data"]["dry_run"] is True
    assert asyncio.run(module.run(1)) == {"done": 1}
    assert nodes.calls("effect-dry") == 1


def test_env_values_reach_the_node_but_never_the_records(
    build: Build, events: CapturedEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`{env: NAME}` is read at run time and passed as a keyword argument; no event contains its value."""
    secret = "s3cr3t-value-that-must-not-leak"
    monkeypatch.setenv("FLOWLEDGER_TEST_SECRET", secret)
    module = build(
        """
        flowledger: 1
        workflow: {id: secrets}
        nodes:
          - {id: use, call: "tests.workflow.nodes:read_env", with: {secret: {env: FLOWLEDGER_TEST_SECRET}}}
        """
    )
    assert asyncio.run(module.run(None)) == {"secret_length": len(secret), "matches": True}
    assert secret not in json.dumps(events.all)


def test_missing_env_fails_the_node_naming_the_variable(
    build: Build, events: CapturedEvents, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unset variable fails the node with a ConfigError that names it and its use."""
    monkeypatch.delenv("FLOWLEDGER_TEST_MISSING", raising=False)
    module = build(
        """
        flowledger: 1
        workflow: {id: noenv}
        nodes:
          - {id: use, call: "tests.workflow.nodes:read_env", with: {secret: {env: FLOWLEDGER_TEST_MISSING}}}
        """
    )
    with pytest.raises(WorkflowFailed):
        asyncio.run(module.run(None))
    message = events.nodes("use")[0]["data"]["error"]["message"]
    assert message == "environment variable FLOWLEDGER_TEST_MISSING is not set; node `use` reads it for with.secret"


def test_on_error_continue_records_the_failure_but_the_run_succeeds(build: Build, events: CapturedEvents) -> None:
    """A failing `on_error: continue` node is recorded failed, its dependents skipped, the run succeeds."""
    module = build(
        """
        flowledger: 1
        workflow: {id: tolerant}
        output: main
        nodes:
          - {id: main, call: "tests.workflow.nodes:double"}
          - {id: optional, call: "tests.workflow.nodes:boom", needs: [main], on_error: continue}
          - {id: after_optional, call: "tests.workflow.nodes:echo", needs: [optional]}
        """
    )
    assert asyncio.run(module.run(4)) == 8
    assert _statuses(events, "optional") == ["failed"]
    assert _statuses(events, "after_optional") == ["skipped"]
    assert events.runs()[0]["data"]["status"] == "succeeded"


@pytest.mark.parametrize(
    "before",
    ["", '  - {id: first, call: "tests.workflow.nodes:aecho"}\n'],
    ids=["first node of its task", "continued in its need's task"],
)
def test_deadline_aborts_the_run(build: Build, events: CapturedEvents, before: str) -> None:
    """Past deadline_s the running node is cut naming the deadline, later nodes are skipped, the run is aborted.

    Also for a node running on in the task of the node before it (``first``)."""
    needs = ", needs: [first]" if before else ""
    module = build(
        "flowledger: 1\nworkflow: {id: late}\nlimits: {deadline_s: 1.0}\nnodes:\n"
        + before
        + f'  - {{id: slow, call: "tests.workflow.nodes:asleepy", with: {{delay_s: 10}}{needs}}}\n'
        + '  - {id: never, call: "tests.workflow.nodes:echo", needs: [slow]}\n'
    )
    with pytest.raises(RunAborted) as info:
        asyncio.run(module.run(None))
    assert info.value.reason == "deadline"
    run = events.runs()[0]["data"]
    assert run["status"] == "aborted"
    assert run["error"]["reason"] == "deadline"
    slow = events.nodes("slow")[-1]["data"]
    assert slow["status"] == "failed"
    assert "deadline" in slow["error"]["message"]
    assert events.nodes("never")[0]["data"]["skip_reason"] == "the run was aborted (deadline)"


def test_a_node_cut_by_the_deadline_says_so_whichever_way_it_stopped(build: Build, events: CapturedEvents) -> None:
    """Past deadline_s every running attempt's error names the deadline: none is a bare `CancelledError:`."""
    module = build(
        """
        flowledger: 1
        workflow: {id: late_map}
        limits: {deadline_s: 0.2}
        output: blocking
        nodes:
          - {id: items, call: "tests.workflow.nodes:echo"}
          - id: each
            call: "tests.workflow.nodes:asleepy"
            needs: [items]
            map: {max_concurrency: 2}
            with: {delay_s: 0.15}
          - {id: blocking, call: "tests.workflow.nodes:sleepy", needs: [items], with: {delay_s: 0.5}}
        """
    )
    with pytest.raises(RunAborted):
        asyncio.run(module.run([1, 2, 3, 4, 5]))
    errors = [e["data"]["error"] for e in events.of_kind("node_finished") if e["data"]["status"] == "failed"]
    assert errors
    for error in errors:
        assert "deadline" in error["message"], error
        if error["type"].endswith("CancelledError"):
            assert error["message"].startswith("cancelled by the run's deadline: the run passed its deadline of 0.2 s")


def test_a_node_cancelled_by_the_budget_says_so(build: Build, events: CapturedEvents) -> None:
    """A node still running when another passes the budget is recorded as cancelled by the run's budget."""
    module = build(
        """
        flowledger: 1
        workflow: {id: costly_parallel}
        limits: {budget_usd: 0.5}
        output: slow
        nodes:
          - {id: pricey, call: "tests.workflow.nodes:spend_later", with: {usd: 0.75, delay_s: 0.05}}
          - {id: slow, call: "tests.workflow.nodes:asleepy", with: {delay_s: 10}}
        """
    )
    with pytest.raises(RunAborted):
        asyncio.run(module.run(None))
    (slow,) = events.nodes("slow")
    assert slow["data"]["status"] == "failed"
    assert slow["data"]["error"]["type"] == "asyncio.exceptions.CancelledError"
    assert slow["data"]["error"]["message"].startswith("cancelled by the run's budget: ")


def test_budget_aborts_the_run(build: Build, events: CapturedEvents) -> None:
    """A node whose reported cost passes budget_usd stops the run before the next node starts."""
    module = build(
        """
        flowledger: 1
        workflow: {id: costly}
        limits: {budget_usd: 0.5}
        nodes:
          - {id: pricey, call: "tests.workflow.nodes:spend", with: {usd: 0.75}}
          - {id: next_step, call: "tests.workflow.nodes:echo", needs: [pricey]}
        """
    )
    with pytest.raises(RunAborted) as info:
        asyncio.run(module.run(None))
    assert info.value.reason == "budget"
    assert events.runs()[0]["data"]["status"] == "aborted"
    assert events.nodes("next_step")[0]["data"]["skip_reason"] == "the run was aborted (budget)"


def test_records_point_at_the_declaring_line(build: Build, events: CapturedEvents) -> None:
    """Every attempt and the run carry the definition's sha256; attempts carry the node's file, line and path."""
    module = build(
        """
        flowledger: 1
        workflow: {id: located}
        nodes:
          - id: first
            call: "tests.workflow.nodes:echo"
          - id: second
            call: "tests.workflow.nodes:boom"
            needs: [first]
        """
    )
    with pytest.raises(WorkflowFailed):
        asyncio.run(module.run(None))
    sha = module.DEFINITION_SHA256
    assert events.of_kind("run_started")[0]["data"]["definition_sha256"] == sha
    failed = events.nodes("second")[0]["data"]
    assert failed["definition_sha256"] == sha
    assert failed["location"] == {"file": "wf.yaml", "line": 7, "path": "nodes[1]"}  # line 1 is blank


def test_a_missing_function_fails_its_node(build: Build, events: CapturedEvents) -> None:
    """A call target that cannot be imported is a recorded node failure, not a crash at import time."""
    module = build(
        """
        flowledger: 1
        workflow: {id: missing}
        nodes:
          - {id: gone, call: "tests.workflow.nodes:no_such_function"}
        """
    )
    with pytest.raises(WorkflowFailed):
        asyncio.run(module.run(None))
    assert "has no function 'no_such_function'" in events.nodes("gone")[0]["data"]["error"]["message"]


def test_importing_a_generated_module_emits_nothing(build: Build, events: CapturedEvents) -> None:
    """Building and importing the module starts no run and imports no node code."""
    build(
        """
        flowledger: 1
        workflow: {id: quiet}
        nodes:
          - {id: only, call: "tests.workflow.nodes_that_do_not_exist:fn"}
        """
    )
    assert events.all == []


def test_effect_duplicates_are_skipped_by_the_opt_in_guard(build: Build, tmp_path: Any) -> None:
    """With the local idempotency guard on, an effect repeated with the same input runs once and is marked duplicate."""
    import flowledger
    from flowledger.instrument import _pipeline
    from flowledger.testing import capture_events

    module = build(
        """
        flowledger: 1
        workflow: {id: guarded}
        nodes:
          - {id: act, call: "tests.workflow.nodes:counted_effect", with: {key: effect-guard}, effect: true}
        """
    )
    before = _pipeline.pipeline().settings
    flowledger.configure(idempotency_guard=True, idempotency_dir=tmp_path / "guard")
    try:
        with capture_events() as captured:
            assert asyncio.run(module.run({"order": 7})) == {"done": {"order": 7}}
            assert asyncio.run(module.run({"order": 7})) == {"done": {"order": 7}}
    finally:
        _pipeline._create(before)
    assert nodes.calls("effect-guard") == 1
    second = captured.nodes("act")[1]["data"]
    assert second["duplicate"] is True
    assert second["output"] == {"done": {"order": 7}}


def test_a_failing_when_predicate_fails_the_node(build: Build, events: CapturedEvents) -> None:
    """A `when` predicate that raises is recorded as the node's failed attempt (phase `when`)."""
    module = build(
        """
        flowledger: 1
        workflow: {id: badwhen}
        nodes:
          - {id: gated, call: "tests.workflow.nodes:echo", when: "tests.workflow.nodes:boom"}
        """
    )
    with pytest.raises(WorkflowFailed):
        asyncio.run(module.run(1))
    recorded = [e["data"] for e in events if e["data"].get("node_id") == "gated" and "attributes" in e["data"]]
    assert recorded[0]["attributes"]["flowledger.phase"] == "when"
    assert events.nodes("gated")[0]["data"]["error"]["message"] == "boom on 1"


def test_backoff_grows_and_is_capped() -> None:
    """The wait after attempt n is backoff_s * factor**(n-1), never more than max_backoff_s."""
    from flowledger.workflow import Retry

    policy = Retry(attempts=5, backoff_s=0.5, factor=3.0, max_backoff_s=4.0)
    assert [policy.delay_s(n) for n in (1, 2, 3, 4)] == [0.5, 1.5, 4.0, 4.0]


def test_cancelling_a_run_cancels_its_running_nodes(build: Build, events: CapturedEvents) -> None:
    """When the caller cancels `run(...)`, the running nodes are cancelled and the run does not succeed."""
    module = build(
        """
        flowledger: 1
        workflow: {id: cancelled}
        nodes:
          - {id: slow, call: "tests.workflow.nodes:asleepy", with: {delay_s: 30}}
        """
    )

    asyncio.run(_cancelled_while_running(module))
    assert _statuses(events, "slow") == ["failed"]
    assert events.runs()[0]["data"]["status"] == "failed"


def test_a_node_cancelled_from_inside_fails_only_itself(build: Build, events: CapturedEvents) -> None:
    """A node whose task is cancelled counts as a failed node; the run fails cleanly, naming it."""
    module = build(
        """
        flowledger: 1
        workflow: {id: selfcancel}
        output: other
        nodes:
          - {id: odd, call: "tests.workflow.nodes:cancel_myself"}
          - {id: other, call: "tests.workflow.nodes:echo"}
        """
    )
    with pytest.raises(WorkflowFailed) as info:
        asyncio.run(module.run(3))
    assert info.value.node_id == "odd"
    assert _statuses(events, "other") == ["succeeded"]


def test_a_definition_s_sample_rate_drops_fast_successes_and_keeps_failures(
    build: Build, events: CapturedEvents
) -> None:
    """sample_rate: 0 in the definition drops a run that succeeded (counted) and keeps one that failed, whole."""
    module = build(
        """
        flowledger: 1
        workflow: {id: sampled}
        sample_rate: 0
        nodes:
          - {id: start, call: "tests.workflow.nodes:echo"}
          - {id: check, call: "tests.workflow.nodes:item_boom", needs: [start]}
        """
    )
    assert module.WORKFLOW.sample_rate == 0.0
    asyncio.run(module.run(1))
    with pytest.raises(WorkflowFailed):
        asyncio.run(module.run(3))
    (dropped,) = events.of_kind("run_sampled_out")
    assert dropped["data"]["workflow_id"] == "sampled"
    (kept,) = events.of_kind("run_finished")
    assert kept["data"]["status"] == "failed"
    assert _statuses(events, "check") == ["failed"]


def test_generated_workflows_capture_each_attempt_s_log_lines(build: Build, events: CapturedEvents) -> None:
    """A sync node's lines, from the runtime's worker thread and a thread it starts, land on its own attempt."""
    module = build(
        """
        flowledger: 1
        workflow: {id: logged}
        nodes:
          - {id: first, call: "tests.workflow.nodes:chatty"}
          - {id: second, call: "tests.workflow.nodes:chatty", needs: [first]}
        """
    )
    assert asyncio.run(module.run(5)) == 5
    by_span = {e["data"]["span_id"]: e["data"] for e in events.of_kind("node_logs")}
    for node_id in ("first", "second"):
        (finished,) = events.nodes(node_id)
        logs = by_span[finished["data"]["span_id"]]
        assert logs["node_id"] == node_id
        assert [r["message"] for r in logs["records"]] == ["working on 5", "helper for 5"]


def test_a_run_s_idle_worker_threads_serve_the_next_run(build: Build, events: CapturedEvents) -> None:
    """Sync nodes of a later run reuse the thread pool of an earlier run whose calls all finished.

    Its pool, not always its very thread: the pool counts a worker idle only after the caller already has the
    result, so the next call may briefly find none idle and start a second thread of the same pool (named after
    it)."""
    module = build(
        """
        flowledger: 1
        workflow: {id: threads}
        nodes:
          - {id: where, call: "tests.workflow.nodes:thread"}
        """
    )
    first = asyncio.run(module.run(0))
    pool = _host._idle_pools[-1]  # given back by the first run
    assert first in pool._threads
    second = asyncio.run(module.run(0))
    assert second in pool._threads
    assert first is not threading.current_thread()


def test_a_pool_with_an_abandoned_call_is_not_reused(build: Build, events: CapturedEvents) -> None:
    """A sync call abandoned at its timeout keeps its pool out of later runs, which get threads of their own."""
    module = build(
        """
        flowledger: 1
        workflow: {id: abandoned}
        output: where
        nodes:
          - {id: slow, call: "tests.workflow.nodes:sleepy", with: {delay_s: 3}, timeout_s: 0.05, on_error: continue}
          - {id: where, call: "tests.workflow.nodes:thread"}
        """
    )
    busy = asyncio.run(module.run(0))  # `slow` is still sleeping in the pool when the run ends
    assert _statuses(events, "slow") == ["failed"]
    assert asyncio.run(module.run(0)) is not busy


def test_a_node_never_sees_what_another_set_in_its_context(build: Build, events: CapturedEvents) -> None:
    """A chain's next node runs in the task of the node before it, but in a context of its own."""
    module = build(
        """
        flowledger: 1
        workflow: {id: contexts}
        output: reader
        nodes:
          - {id: setter, call: "tests.workflow.nodes:mark"}
          - {id: reader, call: "tests.workflow.nodes:read_mark", needs: [setter]}
          - {id: setter_too, call: "tests.workflow.nodes:mark", needs: [reader]}
        """
    )
    assert asyncio.run(module.run(1)) == "unset"
    assert nodes.marker.get() == "unset"
    assert _statuses(events, "setter_too") == ["succeeded"]


def test_a_continued_node_cancelled_from_inside_fails_only_itself(build: Build, events: CapturedEvents) -> None:
    """The first ready dependent runs on in its need's task: cancelling that task fails that node alone."""
    module = build(
        """
        flowledger: 1
        workflow: {id: selfcancel_chain}
        output: other
        nodes:
          - {id: first, call: "tests.workflow.nodes:aecho"}
          - {id: odd, call: "tests.workflow.nodes:cancel_myself", needs: [first]}
          - {id: other, call: "tests.workflow.nodes:aecho", needs: [first]}
          - {id: after, call: "tests.workflow.nodes:aecho", needs: [odd]}
        """
    )
    with pytest.raises(WorkflowFailed) as info:
        asyncio.run(module.run(3))
    assert info.value.node_id == "odd"
    assert _statuses(events, "other") == ["succeeded"]
    assert events.nodes("after")[0]["data"]["skip_reason"] == "needs `odd`, which failed"


def test_cancelling_a_run_cancels_a_continued_node(build: Build, events: CapturedEvents) -> None:
    """A node running on in its need's task is cancelled with the run, and recorded as failed."""
    module = build(
        """
        flowledger: 1
        workflow: {id: cancelled_chain}
        nodes:
          - {id: first, call: "tests.workflow.nodes:aecho"}
          - {id: slow, call: "tests.workflow.nodes:asleepy", needs: [first], with: {delay_s: 30}}
          - {id: never, call: "tests.workflow.nodes:aecho", needs: [slow]}
        """
    )

    asyncio.run(_cancelled_while_running(module))
    assert _statuses(events, "first") == ["succeeded"]
    assert _statuses(events, "slow") == ["failed"]
    assert events.runs()[0]["data"]["status"] == "failed"


def test_a_chain_of_nodes_that_never_wait_lets_the_event_loop_take_turns(build: Build, events: CapturedEvents) -> None:
    """Nodes running on in one task give the loop a turn every few milliseconds, as a task each did."""
    lines = ["flowledger: 1", "workflow: {id: busy_chain}", "output: n49", "nodes:"]
    for i in range(50):
        needs = f", needs: [n{i - 1}]" if i else ""
        lines.append(f'  - {{id: n{i}, call: "tests.workflow.nodes:busy"{needs}}}')
    module = build("\n".join(lines) + "\n")
    ticks = 0

    async def go() -> Any:
        nonlocal ticks

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0)
                ticks += 1

        beside = asyncio.create_task(ticker())
        try:
            return await module.run(0)
        finally:
            beside.cancel()

    assert asyncio.run(go()) == 50
    assert ticks >= 5  # 50 nodes of 2 ms each: a turn every 5 ms is about 20; none at all before


def test_a_cancel_a_node_left_pending_does_not_reach_the_next_node(build: Build, events: CapturedEvents) -> None:
    """A node that asks its task to cancel and returns succeeds; its dependent runs (in a task of its own)."""
    module = build(
        """
        flowledger: 1
        workflow: {id: pending_cancel}
        output: after
        nodes:
          - {id: asks, call: "tests.workflow.nodes:cancel_my_task_and_return"}
          - {id: after, call: "tests.workflow.nodes:aecho", needs: [asks]}
        """
    )
    assert asyncio.run(module.run(7)) == 7
    assert _statuses(events, "asks") == ["succeeded"]
    assert _statuses(events, "after") == ["succeeded"]
