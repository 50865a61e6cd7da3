"""The state machine that folds ledger events into run and node-attempt state.

Projections are a pure function of the *set* of stored events: whatever the
order events arrive in (a node's end before its start, a run's end before
its nodes), with or without replays, the fold ends in the same state. It
gets there with three rules:

* Status moves only through :data:`RUN_TRANSITIONS` / :data:`NODE_TRANSITIONS`:
  forward only, terminal states stay terminal. When two different
  ``run_finished`` events compete (a producer bug, a replayed process), the
  one that finished earliest by the producer's clock (``started_at`` plus
  ``duration_ms``, then the smaller ``event_id``) decides, in any arrival
  order, so a late ``run_finished(failed)`` never flips a succeeded run; the
  statuses the others reported are kept on the run (``finish_conflicts``) and
  the events stay in the ledger. The run's cost follows the same order (the
  winner's, else the next finish's that carries one; a heartbeat's only
  before any finish with a cost: :func:`_maybe_cost`). For node attempts the
  larger ``event_id`` wins.
* A field that both the start and the end event carry is taken from the end
  event (``started_at``, ``workflow_id``...), filling from the start event only
  what the end event lacks.
* Re-applying an event already applied changes nothing.

``stuck`` is not told by events: the sweeper sets it, and any later event of
the run moves the run on (back to ``running``, or to its terminal status).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Final, NamedTuple, Protocol

from flowledger._money import nanos_to_usd, usd_to_nanos
from flowledger._wire import EventKind, NodeStatus, RunStatus, format_datetime
from flowledger.receiver.store._canonical import canonical

__all__ = [
    "NODE_TRANSITIONS",
    "RUN_CONTEXT_FIELDS",
    "RUN_TRANSITIONS",
    "FoldEvent",
    "NodeState",
    "PurgedEvent",
    "RunState",
    "Signal",
    "Transition",
    "completed_at",
    "fold_node",
    "fold_run",
    "mark_stuck",
    "purged_producer",
]


class Signal(enum.Enum):
    """What an event (or the sweeper) tells the state machine."""

    STARTED = "started"
    ACTIVITY = "activity"
    """Any other sign of life: a heartbeat, a node event of the run."""
    FINISHED = "finished"
    SWEPT = "swept"
    """The sweeper found no sign of life for too long."""


class Transition(enum.Enum):
    """What a transition does to the status."""

    KEEP = "keep"
    RUNNING = "running"
    FROM_EVENT = "from_event"
    """Take the terminal status the event carries."""
    TIEBREAK = "tiebreak"
    """Already terminal: the terminal event with the larger event_id decides."""
    STUCK = "stuck"


_R = RunStatus
RUN_TRANSITIONS: Final[dict[tuple[RunStatus | None, Signal], Transition]] = {
    (None, Signal.STARTED): Transition.RUNNING,
    (None, Signal.ACTIVITY): Transition.RUNNING,
    (None, Signal.FINISHED): Transition.FROM_EVENT,
    (_R.RUNNING, Signal.STARTED): Transition.KEEP,
    (_R.RUNNING, Signal.ACTIVITY): Transition.KEEP,
    (_R.RUNNING, Signal.FINISHED): Transition.FROM_EVENT,
    (_R.RUNNING, Signal.SWEPT): Transition.STUCK,
    (_R.STUCK, Signal.STARTED): Transition.RUNNING,
    (_R.STUCK, Signal.ACTIVITY): Transition.RUNNING,
    (_R.STUCK, Signal.FINISHED): Transition.FROM_EVENT,
    (_R.STUCK, Signal.SWEPT): Transition.KEEP,
    **{(s, sig): Transition.KEEP for s in (_R.SUCCEEDED, _R.FAILED, _R.ABORTED) for sig in Signal},
    **{(s, Signal.FINISHED): Transition.TIEBREAK for s in (_R.SUCCEEDED, _R.FAILED, _R.ABORTED)},
}
"""(current run status, signal) -> transition. Every pair is listed; ``None`` is a run not seen yet."""

_N = NodeStatus
NODE_TRANSITIONS: Final[dict[tuple[NodeStatus | None, Signal], Transition]] = {
    (None, Signal.STARTED): Transition.RUNNING,
    (None, Signal.FINISHED): Transition.FROM_EVENT,
    (_N.RUNNING, Signal.STARTED): Transition.KEEP,
    (_N.RUNNING, Signal.FINISHED): Transition.FROM_EVENT,
    **{(s, Signal.STARTED): Transition.KEEP for s in (_N.SUCCEEDED, _N.FAILED, _N.SKIPPED)},
    **{(s, Signal.FINISHED): Transition.TIEBREAK for s in (_N.SUCCEEDED, _N.FAILED, _N.SKIPPED)},
}
"""(current attempt status, signal) -> transition. ``None`` is an attempt not seen yet."""


# Lookups on the hot path: keyed by the plain string values, whose hash is computed in C
# (an Enum member's hash is a Python-level call).
_RUN_FAST: Final = {(s._value_ if s is not None else None, g._value_): o for (s, g), o in RUN_TRANSITIONS.items()}
_NODE_FAST: Final = {(s._value_ if s is not None else None, g._value_): o for (s, g), o in NODE_TRANSITIONS.items()}
_RUN_STATUS: Final = {s.value: s for s in RunStatus}
_NODE_STATUS: Final = {s.value: s for s in NodeStatus}
# Members read through their Enum class cost a metaclass lookup each time: the fold reads these aliases.
_RUN_STARTED: Final = EventKind.RUN_STARTED
_RUN_FINISHED: Final = EventKind.RUN_FINISHED
_HEARTBEAT: Final = EventKind.HEARTBEAT
_NODE_FINISHED: Final = EventKind.NODE_FINISHED
_TAKE_FROM_EVENT: Final = Transition.FROM_EVENT
_TIEBREAK: Final = Transition.TIEBREAK
_BECOME_RUNNING: Final = Transition.RUNNING
_RUN_RUNNING: Final = RunStatus.RUNNING
_NODE_RUNNING: Final = NodeStatus.RUNNING


class PurgedEvent(NamedTuple):
    """What a producer's count reads of an event whose payload was purged: its entry's fields, which the ledger
    keeps (a rebuild counts purged runs' events for their producers, as ingest did)."""

    run_id: str
    project: str | None
    ts: str


def purged_producer(fields: Mapping[str, Any]) -> tuple[PurgedEvent, str, int] | None:
    """``(event, producer_id, producer_seq)`` of a purged event's entry ``fields``, or None when it names no
    producer."""
    producer_id, producer_seq = fields.get("producer_id"), fields.get("producer_seq")
    if not isinstance(producer_id, str) or type(producer_seq) is not int:
        return None
    project = fields.get("project")
    event = PurgedEvent(str(fields.get("run_id")), project if isinstance(project, str) else None, str(fields.get("ts")))
    return event, producer_id, producer_seq


class FoldEvent(Protocol):
    """What the fold reads from an event (``PreparedEvent`` has it)."""

    @property
    def event_id(self) -> str: ...
    @property
    def run_id(self) -> str: ...
    @property
    def kind(self) -> EventKind: ...
    @property
    def ts(self) -> str: ...
    @property
    def started_at(self) -> str | None: ...
    @property
    def project(self) -> str | None: ...
    @property
    def data(self) -> dict[str, Any]: ...
    @property
    def seq(self) -> int: ...


def completed_at(started_at: str, duration_ms: float) -> str:
    """``started_at`` plus ``duration_ms``, in the same normalised form (``...ffffffZ``)."""
    start = datetime.fromisoformat(started_at[:-1])  # naive UTC: the normalised form always ends in Z
    return format_datetime(start + timedelta(milliseconds=duration_ms))


@dataclass(slots=True)
class RunState:
    """One row of the ``runs`` projection (columns in this order)."""

    run_id: str
    project: str | None = None
    workflow_id: str | None = None
    workflow_name: str | None = None
    workflow_version: str | None = None
    status: RunStatus = RunStatus.RUNNING
    trigger_type: str | None = None
    dry_run: bool | None = None
    started_at: str | None = None
    completed_at: str | None = None
    duration_ms: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    error_node_id: str | None = None
    cost_tokens: int | None = None
    cost_tool_calls: int | None = None
    cost_external_requests: int | None = None
    cost_usd: float | None = None
    cost_key: str | None = None
    input_seq: int | None = None
    """Ledger row of the run_started whose ``trigger_data``/``attributes`` the run shows."""
    output_seq: int | None = None
    """Ledger row of the run_finished whose ``output`` the run shows."""
    trace_id: str | None = None
    heartbeat_interval_s: float | None = None
    last_seen_at: str | None = None
    stuck_reason: str | None = None
    started_event_id: str | None = None
    finished_event_id: str | None = None
    finish_conflicts: str | None = None
    """JSON list of the statuses other run_finished events of the run reported against the kept one."""
    resumed_from: str | None = None
    """The run this run resumes (its run_started's ``resumed_from``)."""
    definition_sha256: str | None = None
    resumed_from_definition_sha256: str | None = None
    """The definition of the run it resumes, when that differs or is known."""
    input_sha256: str | None = None
    """sha256 of the trigger data captured in full (its ``blobs`` key)."""
    user_id: str | None = None
    agent_id: str | None = None
    intent: str | None = None
    parent_run_id: str | None = None
    """The run context (who, which agent, why, started by which run) of the run_started that decides."""
    cost_breakdown: str | None = None
    """Canonical JSON of the cost by category, ``{key: {count, usd_nanos}}``; null for events without one."""
    seen: bool = False
    """Whether any event reached this state (not a column)."""


RUN_COLUMNS: Final = tuple(f.name for f in fields(RunState) if f.name != "seen")


@dataclass(slots=True)
class NodeState:
    """One row of the ``node_runs`` projection: one attempt of one node (columns in this order)."""

    run_id: str
    span_id: str
    node_id: str | None = None
    attempt: int | None = None
    item: int | None = None
    status: NodeStatus | None = None
    skip_reason: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    duration_ms: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    effect: bool | None = None
    idempotency_key: str | None = None
    simulated: bool | None = None
    duplicate: bool | None = None
    location: str | None = None
    """JSON text of ``{file, line, path}``."""
    parent_span_id: str | None = None
    cost_tokens: int | None = None
    cost_tool_calls: int | None = None
    cost_external_requests: int | None = None
    cost_usd: float | None = None
    input_key: str | None = None
    """``<rank>:<event_id>`` of the event whose ``input`` the attempt shows (finish ranks above start)."""
    input_seq: int | None = None
    output_seq: int | None = None
    """Ledger row of the winning node_finished: its ``output`` and ``error.stack``."""
    started_event_id: str | None = None
    finished_event_id: str | None = None
    output_sha256: str | None = None
    """sha256 of the complete output's JSON text, when captured in full (the ``blobs`` key)."""
    output_capture: str | None = None
    """What became of the full capture (an OutputCapture); null without one."""
    cost_breakdown: str | None = None
    """Canonical JSON of the cost by category, ``{key: {count, usd_nanos}}``; null for events without one."""
    project: str | None = None
    """The project of its run: an attempt is ``(project, run_id, span_id)``."""


NODE_COLUMNS: Final = tuple(f.name for f in fields(NodeState))
_NODE_SHARED: Final = ("node_id", "attempt", "item", "effect", "idempotency_key", "parent_span_id")
_RUN_SHARED: Final = ("workflow_id", "workflow_name")
RUN_CONTEXT_FIELDS: Final = ("user_id", "agent_id", "intent", "parent_run_id")
"""Data fields of run_started that the run keeps as they are (a value that is not a string is left out)."""


def _set_cost(state: RunState | NodeState, cost: dict[str, Any] | None) -> None:
    if not cost:  # most attempts carry no cost: clear the fields without the lookups
        state.cost_tokens = state.cost_tool_calls = state.cost_external_requests = None
        state.cost_usd = None
        state.cost_breakdown = None
        return
    state.cost_tokens = cost.get("tokens")
    state.cost_tool_calls = cost.get("tool_calls")
    state.cost_external_requests = cost.get("external_requests")
    usd = cost.get("usd")
    # Money is exact to the nano-dollar (flowledger._money): a noisy float from an older SDK is stored as
    # the amount it stands for, so that sums over runs stay exact.
    state.cost_usd = None if usd is None else nanos_to_usd(usd_to_nanos(usd))
    breakdown = cost.get("breakdown")
    state.cost_breakdown = canonical(breakdown) if breakdown else None


def fold_run(state: RunState | None, event: FoldEvent) -> RunState:
    """Apply one event to its run's state (created when None) and return it."""
    run = state if state is not None else RunState(run_id=event.run_id, project=event.project)
    kind = event.kind
    data = event.data
    signal = "started" if kind is _RUN_STARTED else "finished" if kind is _RUN_FINISHED else "activity"
    outcome = _RUN_FAST[(run.status._value_ if run.seen else None, signal)]
    run.seen = True
    ts = event.ts
    if run.last_seen_at is None or ts > run.last_seen_at:
        run.last_seen_at = ts
    if kind is _RUN_STARTED:
        # run_started decides the workflow's identity; run_finished only fills what it lacks.
        for name in _RUN_SHARED:
            value = data.get(name)
            if value is not None:
                setattr(run, name, value)
        if run.started_event_id is None or event.event_id > run.started_event_id:
            run.started_event_id = event.event_id
            run.workflow_version = data.get("workflow_version")
            run.trigger_type = data.get("trigger_type")
            run.input_seq = event.seq
            run.dry_run = data.get("dry_run")
            run.heartbeat_interval_s = data.get("heartbeat_interval_s")
            run.resumed_from = data.get("resumed_from")
            run.definition_sha256 = data.get("definition_sha256")
            run.resumed_from_definition_sha256 = data.get("resumed_from_definition_sha256")
            run.input_sha256 = data.get("trigger_data_sha256")
            for name in RUN_CONTEXT_FIELDS:
                value = data.get(name)
                setattr(run, name, value if type(value) is str else None)
        if run.started_at is None:
            run.started_at = event.ts
    elif kind is _RUN_FINISHED:
        done = completed_at(event.started_at or event.ts, data["duration_ms"])
        statuses = _finish_statuses(run)
        if (outcome is _TAKE_FROM_EVENT or outcome is _TIEBREAK) and (
            run.finished_event_id is None or (done, event.event_id) < (run.completed_at or "", run.finished_event_id)
        ):
            run.finished_event_id = event.event_id
            run.output_seq = event.seq
            run.status = _RUN_STATUS[data["status"]]
            run.stuck_reason = None
            run.started_at = event.started_at
            run.duration_ms = data["duration_ms"]
            run.completed_at = done
            error = data.get("error") or {}
            run.error_type = error.get("type")
            run.error_message = error.get("message")
            run.error_node_id = error.get("node_id")
        if statuses:
            statuses.add(data["status"])
            statuses.discard(run.status._value_)
            run.finish_conflicts = canonical(sorted(statuses)) if statuses else None
        for name in _RUN_SHARED:
            if getattr(run, name) is None:
                setattr(run, name, data.get(name))
        if data.get("cost") is not None:
            _maybe_cost(run, data["cost"], f"{_FINISH_COST}{done}:{event.event_id}")
    elif kind is _HEARTBEAT and data.get("cost") is not None:
        _maybe_cost(run, data["cost"], f"{_HEARTBEAT_COST}{event.ts}:{event.event_id}")
    if run.trace_id is None or kind is _RUN_STARTED:
        run.trace_id = data.get("trace_id") or run.trace_id
    if outcome is _BECOME_RUNNING:
        run.status = _RUN_RUNNING
        run.stuck_reason = None
    return run


def _finish_statuses(run: RunState) -> set[str]:
    """Every status the run's run_finished events so far reported (empty before the first)."""
    if run.finished_event_id is None:
        return set()
    statuses: set[str] = set(json.loads(run.finish_conflicts)) if run.finish_conflicts else set()
    statuses.add(run.status._value_)
    return statuses


_FINISH_COST: Final = "3:"
"""``cost_key`` of a cost from a run_finished: ``3:<completed_at>:<event_id>``, the smaller (the finish that wins the
status, :func:`fold_run`'s comparison: both parts have a fixed width) deciding among them."""
_HEARTBEAT_COST: Final = "1:"
"""``cost_key`` of a cost from a heartbeat: ``1:<ts>:<event_id>``, the larger (the latest) deciding among them."""
_LEGACY_FINISH_COST: Final = "2"
"""The first character of a ``cost_key`` from a run_finished as earlier receivers kept it (``2:<event_id>``, the
larger deciding): it stands while it names the winning run_finished; otherwise the winning finish's own cost
replaces it when it arrives, and no other's (``flowledger rebuild`` keys every run's cost anew)."""


def _maybe_cost(run: RunState, cost: dict[str, Any], key: str) -> None:
    """Keep ``cost`` when its key beats the run's: any run_finished's beats any heartbeat's, the winning
    run_finished's (the earliest finish, then the smaller event id) beats the others', the latest heartbeat's the
    earlier ones'. A run's cost thus follows its status whatever order its events arrive in."""
    kept = run.cost_key
    if kept is None:
        wins = True
    elif key[0] == "3":  # _FINISH_COST (the status was decided before: finished_event_id is the winner's)
        rank = kept[0]
        if rank == "3":
            wins = key < kept
        elif rank == _LEGACY_FINISH_COST:  # replaced by the winner's own cost only (a loser's is no better)
            wins = kept[2:] != run.finished_event_id and key.rsplit(":", 1)[1] == run.finished_event_id
        else:
            wins = True
    else:  # a heartbeat: only over an earlier one
        wins = kept[0] == "1" and key > kept
    if wins:
        run.cost_key = key
        _set_cost(run, cost)


def mark_stuck(run: RunState, reason: str) -> bool:
    """Apply the sweeper's verdict; return whether the run became stuck."""
    outcome = RUN_TRANSITIONS[(run.status, Signal.SWEPT)]
    if outcome is Transition.STUCK:
        run.status = RunStatus.STUCK
        run.stuck_reason = reason
        return True
    return False


def fold_node(state: NodeState | None, event: FoldEvent) -> NodeState:
    """Apply a node_started/node_finished event to its attempt's state (created when None)."""
    data = event.data
    node = (
        state if state is not None else NodeState(run_id=event.run_id, span_id=data["span_id"], project=event.project)
    )
    finished_event = event.kind is _NODE_FINISHED
    status = node.status
    outcome = _NODE_FAST[(None if status is None else status._value_, "finished" if finished_event else "started")]
    get = data.get
    if not finished_event:
        # node_finished decides; node_started only fills what is still unknown (the _NODE_SHARED fields).
        if node.started_event_id is None or event.event_id > node.started_event_id:
            node.started_event_id = event.event_id
        if node.node_id is None:
            node.node_id = get("node_id")
        if node.attempt is None:
            node.attempt = get("attempt")
        if node.item is None:
            node.item = get("item")
        if node.effect is None:
            node.effect = get("effect")
        if node.idempotency_key is None:
            node.idempotency_key = get("idempotency_key")
        if node.parent_span_id is None:
            node.parent_span_id = get("parent_span_id")
        if node.location is None and (location := get("location")) is not None:
            node.location = canonical(location)
        if node.started_at is None:
            node.started_at = event.ts
        if "input" in data:
            _maybe_input(node, "1:" + event.event_id, event.seq)
        if outcome is _BECOME_RUNNING:
            node.status = _NODE_RUNNING
        return node
    if (outcome is _TAKE_FROM_EVENT or outcome is _TIEBREAK) and (
        node.finished_event_id is None or event.event_id > node.finished_event_id
    ):
        node.finished_event_id = event.event_id
        node.output_seq = event.seq
        node.status = _NODE_STATUS[data["status"]]
        # The _NODE_SHARED fields the event carries, spelled out: this runs once per attempt.
        if (value := get("node_id")) is not None:
            node.node_id = value
        if (value := get("attempt")) is not None:
            node.attempt = value
        if (value := get("item")) is not None:
            node.item = value
        if (value := get("effect")) is not None:
            node.effect = value
        if (value := get("idempotency_key")) is not None:
            node.idempotency_key = value
        if (value := get("parent_span_id")) is not None:
            node.parent_span_id = value
        if (location := get("location")) is not None:
            node.location = canonical(location)
        node.skip_reason = data.get("skip_reason")
        node.started_at = event.started_at
        node.duration_ms = data["duration_ms"]
        node.completed_at = completed_at(event.started_at or event.ts, data["duration_ms"])
        error = data.get("error") or {}
        node.error_type = error.get("type")
        node.error_message = error.get("message")
        node.simulated = data.get("simulated")
        node.duplicate = data.get("duplicate")
        node.output_sha256 = data.get("output_sha256")
        node.output_capture = data.get("output_capture")
        _set_cost(node, data.get("cost"))
    if "input" in data:
        _maybe_input(node, "2:" + event.event_id, event.seq)
    return node


def _maybe_input(node: NodeState, key: str, seq: int) -> None:
    if node.input_key is None or key > node.input_key:
        node.input_key = key
        node.input_seq = seq
