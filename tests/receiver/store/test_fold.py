"""The fold state machine: transition table, forward-only states, and order-independent convergence."""

from __future__ import annotations

import copy
import sqlite3
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowledger._wire import EventKind, NodeStatus, RunStatus
from flowledger.receiver._config import IngestLimits
from flowledger.receiver._validate import prepare_event
from flowledger.receiver.store._event import PreparedEvent
from flowledger.receiver.store._fold import (
    _NODE_SHARED,
    NODE_TRANSITIONS,
    RUN_TRANSITIONS,
    NodeState,
    RunState,
    Signal,
    Transition,
    fold_node,
    fold_run,
    mark_stuck,
)
from tests.receiver._support import LiveReceiver, RunEvents, simple_run, typical_run

_NODE_KINDS = {EventKind.NODE_STARTED, EventKind.NODE_FINISHED}


def _prepared(events: list[dict[str, Any]]) -> list[PreparedEvent]:
    out = []
    for i, raw in enumerate(events):
        prepared = prepare_event(copy.deepcopy(raw), i, IngestLimits(), None)
        assert isinstance(prepared, PreparedEvent), prepared
        out.append(prepared)
    return out


def _fold_all(events: list[PreparedEvent]) -> tuple[dict[str, RunState], dict[tuple[str, str], NodeState]]:
    runs: dict[str, RunState] = {}
    nodes: dict[tuple[str, str], NodeState] = {}
    for event in events:
        runs[event.run_id] = fold_run(runs.get(event.run_id), event)
        if event.kind in _NODE_KINDS:
            key = (event.run_id, event.data["span_id"])
            nodes[key] = fold_node(nodes.get(key), event)
    return runs, nodes


def _conflicting_run() -> RunEvents:
    """A run whose producer sent two different run_finished events (a bug the fold must still order)."""
    run = simple_run()
    run.finish("aborted")
    return run


_RUNS = [typical_run().events, simple_run().events, _conflicting_run().events]


def test_run_transition_table_covers_every_pair() -> None:
    """Every (status, signal) pair has an outcome, so no event can hit an undefined transition."""
    for status in [None, *RunStatus]:
        for signal in Signal:
            if status is None and signal is Signal.SWEPT:
                continue
            assert (status, signal) in RUN_TRANSITIONS


def test_terminal_states_stay_terminal() -> None:
    """From a terminal status only a competing terminal event (tie-break) can act; nothing goes back."""
    for (status, signal), outcome in RUN_TRANSITIONS.items():
        if status is not None and status.terminal:
            assert outcome in (Transition.KEEP, Transition.TIEBREAK), (status, signal)
    for (node_status, signal), outcome in NODE_TRANSITIONS.items():
        if node_status is not None and node_status.terminal:
            assert outcome in (Transition.KEEP, Transition.TIEBREAK), (node_status, signal)


def test_node_finished_before_started_converges() -> None:
    """A node's end arriving before its start gives the same attempt as the natural order."""
    events = _prepared(simple_run().events)
    start, end = events[1], events[2]
    forward = fold_node(fold_node(None, start), end)
    backward = fold_node(fold_node(None, end), start)
    assert forward == backward
    assert forward.status is NodeStatus.SUCCEEDED


def test_skipped_node_has_only_a_finish() -> None:
    """A skipped node's lone node_finished makes a complete attempt with its reason."""
    run = RunEvents().start().skipped("notify", "branch not taken").finish()
    _, nodes = _fold_all(_prepared(run.events))
    (node,) = nodes.values()
    assert node.status is NodeStatus.SKIPPED
    assert node.skip_reason == "branch not taken"


def _status(run: RunState) -> RunStatus:
    """The run's status now (a call, so that the type checker does not carry an earlier narrowing over a fold)."""
    return run.status


def test_stuck_run_moves_on_with_a_late_event() -> None:
    """The sweeper's stuck verdict is undone by any later event, and a finish makes it terminal."""
    events = _prepared(typical_run().events)
    run = fold_run(None, events[0])
    assert mark_stuck(run, "silent")
    assert _status(run) is RunStatus.STUCK
    fold_run(run, events[3])
    assert _status(run) is RunStatus.RUNNING
    assert run.stuck_reason is None
    assert mark_stuck(run, "silent again")
    fold_run(run, events[-1])
    assert _status(run) is RunStatus.FAILED
    assert not mark_stuck(run, "too late")


def test_competing_finishes_keep_the_earliest_by_producer_time_in_any_order() -> None:
    """Two different run_finished events: the one that finished first wins whichever arrives first; the other shows."""
    events = _prepared(_conflicting_run().events)
    first, second = events[-2], events[-1]  # succeeded, then (later by the producer's clock) aborted
    a = fold_run(fold_run(None, first), second)
    b = fold_run(fold_run(None, second), first)
    assert a == b
    assert a.status is RunStatus.SUCCEEDED
    assert a.finished_event_id == first.event_id
    assert a.finish_conflicts == '["aborted"]'


def test_a_terminal_run_never_flips_on_a_later_conflicting_finish() -> None:
    """A succeeded run stays succeeded when a run_finished(failed) that finished later arrives after it."""
    run = simple_run()
    run.finish("failed", error_node="fetch")
    events = _prepared(run.events)
    state = None
    for event in events:
        state = fold_run(state, event)
    assert state is not None
    assert state.status is RunStatus.SUCCEEDED
    assert state.error_type is None
    assert state.finish_conflicts == '["failed"]'


def test_agreeing_finishes_are_no_conflict() -> None:
    """Two run_finished events with the same status record no conflict."""
    run = simple_run()
    run.finish("succeeded")
    events = _prepared(run.events)
    state = None
    for event in reversed(events):
        state = fold_run(state, event)
    assert state is not None
    assert state.finish_conflicts is None


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_fold_converges_over_permutations_and_duplicates(data: st.DataObject) -> None:
    """Any order of a run's events, with any events repeated, folds to the same state as the natural order."""
    events = _prepared(data.draw(st.sampled_from(_RUNS)))
    expected = _fold_all(events)
    repeats = data.draw(st.lists(st.sampled_from(events), max_size=len(events)))
    shuffled = data.draw(st.permutations(events + repeats))
    assert _fold_all(shuffled) == expected


@pytest.mark.parametrize("late_first", [False, True])
def test_a_late_conflicting_finish_over_http_keeps_the_status_and_shows_the_conflict(
    live: LiveReceiver, late_first: bool
) -> None:
    """Over a real socket: the later run_finished(failed) is stored but the run stays succeeded, with the conflict."""
    run = simple_run()
    run.finish("failed", error_node="fetch")
    on_time, late = run.events[:-1], run.events[-1:]
    for batch in [late, on_time] if late_first else [on_time, late]:
        assert live.post(batch).json()["rejected"] == []
    got = live.get(f"/api/runs/{run.run_id}").json()
    assert got["status"] == "succeeded"
    assert got["error"] is None
    assert got["finish_conflicts"] == ["failed"]
    with sqlite3.connect(live.db_path) as conn:
        kinds = [k for (k,) in conn.execute("SELECT kind FROM ledger WHERE run_id = ?", (run.run_id,))]
    assert kinds.count("run_finished") == 2


@dataclass
class _Event:
    """The fields the fold reads (FoldEvent)."""

    event_id: str
    kind: EventKind
    data: dict[str, Any]
    run_id: str = "run-1"
    ts: str = "2026-01-31T08:00:00.000000Z"
    started_at: str | None = "2026-01-31T08:00:00.000000Z"
    project: str | None = None
    seq: int = 1


def test_every_shared_attempt_field_is_filled_by_the_start_and_decided_by_the_finish() -> None:
    """Each field a node_started and node_finished both carry (_NODE_SHARED) is taken from the start while unknown,
    then from the finish that decides, in either order."""
    started = {name: f"start-{name}" for name in _NODE_SHARED}
    finished = {name: f"finish-{name}" for name in _NODE_SHARED}
    start = _Event("e1", EventKind.NODE_STARTED, {"span_id": "s", **started})
    finish = _Event(
        "e2", EventKind.NODE_FINISHED, {"span_id": "s", "status": "succeeded", "duration_ms": 1.0, **finished}
    )
    for order in ((start, finish), (finish, start)):
        node = None
        for event in order:
            node = fold_node(node, event)
        assert node is not None
        assert {name: getattr(node, name) for name in _NODE_SHARED} == finished
    only_started = fold_node(None, start)
    assert {name: getattr(only_started, name) for name in _NODE_SHARED} == started
    partial = _Event("e3", EventKind.NODE_FINISHED, {"span_id": "s", "status": "failed", "duration_ms": 1.0})
    assert {name: getattr(fold_node(fold_node(None, start), partial), name) for name in _NODE_SHARED} == started
