"""Runs and attempts started and ended from a runtime's callbacks: start()/end(), continued runs, named parents."""

from __future__ import annotations

import flowledger
from flowledger.instrument import attempt, current_node, current_run, record_skip
from flowledger.testing import CapturedEvents


def test_a_run_started_without_with_is_not_current_unless_asked(events: CapturedEvents) -> None:
    """start(current=False) records the run but leaves the context alone; end(error) fails it."""
    run = flowledger.run("cb").start(current=False)
    assert current_run() is None
    run.end(ValueError("stopped"))
    (finished,) = events.runs()
    assert (finished["data"]["status"], finished["data"]["error"]["type"]) == ("failed", "ValueError")


def test_a_run_started_current_is_current_until_it_ends(events: CapturedEvents) -> None:
    """start() makes the run current, as entering with does; end() restores the context and is idempotent."""
    run = flowledger.run("cb").start()
    assert current_run() is run
    assert run.trace_context() == f"00-{run.trace_id}-{run.span_id}-01"
    run.end()
    run.end()
    assert current_run() is None
    assert [e["kind"] for e in events] == ["run_started", "run_finished"]


def test_an_attempt_names_its_run_and_parent(events: CapturedEvents) -> None:
    """attempt(run=, parent=) joins that run under that span, from any context; start and end are idempotent."""
    run = flowledger.run("cb").start(current=False)
    outer = attempt("outer", run=run).start(current=False)
    inner = attempt("inner", run=run, parent=outer.trace_context(), input=1).start(current=False)
    inner.start(current=False)
    assert current_node() is None
    inner.set_output(2)
    inner.add_cost(tokens=4)
    inner.end()
    inner.end()
    outer.end()
    run.end()
    (inner_event,) = events.nodes("inner")
    (outer_event,) = events.nodes("outer")
    assert inner_event["data"]["parent_span_id"] == outer_event["data"]["span_id"]
    assert outer_event["data"]["parent_span_id"] == run.span_id
    assert (inner_event["data"]["input"], inner_event["data"]["output"]) == (1, 2)
    assert events.runs()[0]["data"]["cost"]["tokens"] == 4


def test_an_attempt_started_current_makes_its_named_run_current_too(events: CapturedEvents) -> None:
    """With current=True the attempt and its run are current while it runs, so flowledger.cost() reaches both."""
    run = flowledger.run("cb").start(current=False)
    node_attempt = attempt("work", run=run).start()
    assert current_node() is node_attempt
    assert current_run() is run
    flowledger.cost(usd=0.25)
    node_attempt.end()
    assert current_run() is None
    run.end()
    assert events.nodes("work")[0]["data"]["cost"]["usd"] == 0.25


def test_a_continued_run_records_attempts_only(events: CapturedEvents) -> None:
    """Run.continued joins run_id and the carried trace: its attempts go there, and it emits no run events."""
    origin = flowledger.run("cb").start(current=False)
    carried = origin.trace_context()
    part = flowledger.Run.continued(origin.run_id, workflow_id="cb", traceparent=carried)
    with part:
        assert part.continues
        assert flowledger.traceparent() == carried
        with attempt("remote"):
            pass
    origin.end()
    (remote,) = events.nodes("remote")
    assert (remote["run_id"], remote["data"]["trace_id"]) == (origin.run_id, origin.trace_id)
    assert remote["data"]["parent_span_id"] == origin.span_id
    assert [e["kind"] for e in events].count("run_started") == 1


def test_a_skip_names_its_run(events: CapturedEvents) -> None:
    """record_skip(run=) records the skip in that run even where it is not current."""
    run = flowledger.run("cb").start(current=False)
    record_skip("later", "not needed", run=run)
    run.end()
    (skip,) = events.nodes("later")
    assert (skip["run_id"], skip["data"]["status"]) == (run.run_id, "skipped")
    assert skip["data"]["parent_span_id"] == run.span_id


def test_a_run_can_adopt_a_runtimes_own_id(events: CapturedEvents) -> None:
    """Run(run_id=) records the run under that id, so other processes of the runtime can continue it by it."""
    given = "0f1e2d3c-4b5a-4968-8776-655443322110"
    with flowledger.run("cb", run_id=given) as run, attempt("step"):
        pass
    assert run.run_id == given
    assert {e["run_id"] for e in events} == {given}
