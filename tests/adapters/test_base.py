"""The adapter interface: runs and attempts kept by a runtime's own keys, started and ended from callbacks."""

from __future__ import annotations

import threading

import flowledger
from flowledger.adapters import Cost, Recorder, ReportedFailure
from flowledger.instrument import current_node, current_run
from flowledger.testing import CapturedEvents


def test_a_run_and_its_attempts_are_recorded_by_key(events: CapturedEvents) -> None:
    """run_started/node_started/node_finished/run_finished by key make one run with its attempts, input and output."""
    recorder = Recorder()
    recorder.run_started("r1", "etl", data={"day": 3})
    recorder.node_started("t1", "load", run_key="r1", input={"rows": 2})
    recorder.node_finished("t1", output=[1, 2], cost=Cost(tokens=7, usd=0.5))
    recorder.run_finished("r1", output="done")
    (started,) = events.of_kind("run_started")
    (attempt,) = events.nodes("load")
    (finished,) = events.runs()
    assert started["data"]["trigger_data"] == {"day": 3}
    assert attempt["run_id"] == started["run_id"] == finished["run_id"]
    assert (attempt["data"]["input"], attempt["data"]["output"]) == ({"rows": 2}, [1, 2])
    assert attempt["data"]["parent_span_id"] == started["data"]["span_id"]
    assert attempt["data"]["cost"]["tokens"] == finished["data"]["cost"]["tokens"] == 7
    assert (finished["data"]["status"], finished["data"]["output"]) == ("succeeded", "done")


def test_callbacks_leave_the_calling_context_alone(events: CapturedEvents) -> None:
    """By default neither the run nor the attempt becomes current where the callback ran."""
    recorder = Recorder()
    recorder.run_started("r", "wf")
    recorder.node_started("n", "step", run_key="r")
    assert current_run() is None
    assert current_node() is None
    recorder.node_finished("n")
    recorder.run_finished("r")
    assert [e["kind"] for e in events] == ["run_started", "node_finished", "run_finished"]


def test_an_attempt_started_current_is_what_flowledger_cost_adds_to(events: CapturedEvents) -> None:
    """With current=True the attempt and its run are current, so flowledger.cost() inside the work attaches."""
    recorder = Recorder()
    recorder.run_started("r", "wf")
    recorder.node_started("n", "step", run_key="r", current=True)
    flowledger.cost(tool_calls=2)
    recorder.node_finished("n")
    assert current_run() is None
    recorder.run_finished("r")
    assert events.nodes("step")[0]["data"]["cost"]["tool_calls"] == 2
    assert events.runs()[0]["data"]["cost"]["tool_calls"] == 2


def test_a_failed_attempt_fails_the_run_with_its_node(events: CapturedEvents) -> None:
    """An error at node end fails the attempt; the run ended with that error names the node."""
    recorder = Recorder()
    recorder.run_started("r", "wf")
    recorder.node_started("n", "charge", run_key="r")
    error = ReportedFailure("the card was declined")
    recorder.node_finished("n", error=error)
    recorder.run_finished("r", error=error)
    (attempt,) = events.nodes("charge")
    assert attempt["data"]["status"] == "failed"
    assert attempt["data"]["error"]["type"] == "flowledger.adapters.ReportedFailure"
    run = events.runs()[0]["data"]
    assert (run["status"], run["error"]["node_id"]) == ("failed", "charge")


def test_nested_attempts_are_children_of_their_parent_span(events: CapturedEvents) -> None:
    """An attempt started with parent_key joins its parent's run, its span a child of the parent's."""
    recorder = Recorder()
    recorder.run_started("r", "wf")
    recorder.node_started("outer", "graph", run_key="r")
    recorder.node_started("inner", "step", parent_key="outer")
    recorder.node_finished("inner")
    recorder.node_finished("outer")
    recorder.run_finished("r")
    outer = events.nodes("graph")[0]["data"]
    inner = events.nodes("step")[0]["data"]
    assert inner["parent_span_id"] == outer["span_id"]
    assert len({e["run_id"] for e in events}) == 1


def test_a_run_continued_elsewhere_adds_attempts_to_the_same_run_and_trace(events: CapturedEvents) -> None:
    """A continued part records attempts under the run id and trace it was given, and no run events of its own."""
    recorder = Recorder()
    origin = recorder.run_started("r", "wf")
    carried = origin.trace_context()
    assert carried is not None

    def worker() -> None:
        other = Recorder()
        other.run_continued("part", origin.run_id, workflow_id="wf", traceparent=carried)
        other.node_started("t", "remote_step", run_key="part", input=1)
        other.node_finished("t", output=2)
        other.run_finished("part")

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    recorder.run_finished("r")
    (attempt,) = events.nodes("remote_step")
    assert attempt["run_id"] == origin.run_id
    assert attempt["data"]["trace_id"] == origin.trace_id
    assert attempt["data"]["parent_span_id"] == origin.span_id
    assert [e["kind"] for e in events].count("run_finished") == 1


def test_skips_and_unknown_keys(events: CapturedEvents) -> None:
    """A skip is recorded under its run; ending keys that were never started is ignored."""
    recorder = Recorder()
    recorder.run_started("r", "wf")
    recorder.node_skipped("r", "notify", "condition false")
    recorder.node_finished("nope", output=1)
    recorder.run_finished("missing")
    recorder.run_finished("r")
    (skip,) = events.nodes("notify")
    assert (skip["data"]["status"], skip["data"]["skip_reason"]) == ("skipped", "condition false")


def test_an_attempt_without_a_run_records_a_run_of_its_own(events: CapturedEvents) -> None:
    """node_started with no run known records the attempt as a run of its own, ended with it."""
    recorder = Recorder()
    recorder.node_started("n", "lonely", input=5)
    recorder.node_finished("n", output=6)
    (run,) = events.runs()
    assert run["data"]["workflow_id"] == "lonely"
    assert run["run_id"] == events.nodes("lonely")[0]["run_id"]


def test_a_run_past_its_budget_does_not_start_attempts(events: CapturedEvents) -> None:
    """Once the run's cost passed its budget, node_started returns None and the run ends aborted."""
    recorder = Recorder()
    run = recorder.run_started("r", "wf")
    run.budget_usd = 0.1
    recorder.node_started("a", "first", run_key="r")
    recorder.node_finished("a", cost=Cost(usd=1.0))
    assert recorder.node_started("b", "second", run_key="r") is None
    recorder.run_finished("r")
    assert events.runs()[0]["data"]["status"] == "aborted"
    assert events.nodes("second") == []


def test_a_runtime_s_names_past_the_wire_format_are_fitted_never_raised(events: CapturedEvents) -> None:
    """A task name past 256 characters, an empty one, a run id that is not a UUID: the runtime's callback goes on and
    the run and its attempt are recorded, the names cut (flowledger.run() refuses them from user code instead)."""
    recorder = Recorder()
    recorder.run_started("r", "t" * 300, name="n" * 2000, run_id="order-123")
    recorder.node_started("n", "s" * 300, run_key="r")
    recorder.node_finished("n")
    recorder.run_finished("r")
    recorder.run_started("e", "")
    recorder.run_finished("e")
    first, empty = events.of_kind("run_started")
    assert (first["data"]["workflow_id"], first["data"]["workflow_name"]) == ("t" * 256, "n" * 1024)
    assert first["run_id"] != "order-123"
    assert events.nodes("s" * 256)[0]["run_id"] == first["run_id"]
    assert empty["data"]["workflow_id"] == "unnamed"
    assert [e["data"]["status"] for e in events.runs()] == ["succeeded", "succeeded"]
