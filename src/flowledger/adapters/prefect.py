"""Prefect 3: flows become runs and task runs become node attempts, through Prefect's state hooks.

One line per flow or task turns it on (``pip install 'flowledger[prefect]'``)::

    from flowledger.adapters.prefect import instrument

    @instrument
    @task(retries=2)
    def price(order): ...

    @instrument
    @flow
    def order_intake(order): ...

:func:`instrument` adds hooks through Prefect's own ``on_running``,
``on_completion``, ``on_failure`` (and, for flows, ``on_crashed`` and
``on_cancellation``) registration; it patches nothing. A flow run is a
flowledger run (its parameters the input, its result the output); each task
run attempt is a node attempt of its flow's run, numbered as Prefect counts
its retries; a subflow is a node of its parent's run, with its tasks nested
under it. A task run whose flow is not instrumented records itself as a run
of its own.

The flow's run takes the flow run's id as its own, and the trace of
:func:`flow_traceparent` (unless an OpenTelemetry span is current where the
flow starts: then it joins that span). A task run that Prefect runs in
another process (``ProcessPoolTaskRunner``, a worker) finds its flow in
Prefect's run context, sees that it is instrumented, and continues the
flow's run by that id, in that trace: no context needs to be carried.

A task attempt's input is its parameters as Prefect's task run context holds
them when the attempt starts; a retried attempt's error is the exception
Prefect is handling when it retries, or a
:class:`~flowledger.adapters.ReportedFailure` with the state's message. The
task's hooks run where the task runs, so ``flowledger.cost()`` and
``@flowledger.node`` inside a task attach to its attempt.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Final, TypeVar
from uuid import UUID

import flowledger
from flowledger._exceptions import ReportedFailure
from flowledger.adapters._base import UNSET, Recorder

if TYPE_CHECKING:
    from prefect import Flow, Task
    from prefect.client.schemas.objects import FlowRun, State, TaskRun

__all__ = ["flow_traceparent", "instrument", "recorder"]

_F = TypeVar("_F", bound="Flow[Any, Any] | Task[Any, Any]")
_MARK: Final = "__flowledger_instrumented__"

recorder: Final = Recorder()
"""The recorder of every instrumented Prefect flow and task in this process."""

_SUBFLOW: Final = "subflow"
_parts: set[tuple[str, str]] = set()  # task runs of this process recorded in a part of their flow's run


def instrument(obj: _F) -> _F:
    """Record ``obj`` (a Prefect ``Flow`` or ``Task``) with flowledger; returns it. Idempotent."""
    from prefect import Flow, Task

    if getattr(obj, _MARK, False):
        return obj
    if isinstance(obj, Flow):
        obj.on_running(_flow_running)
        obj.on_completion(_flow_completed)
        obj.on_failure(_flow_failed)
        obj.on_crashed(_flow_failed)
        obj.on_cancellation(_flow_failed)
    elif isinstance(obj, Task):
        obj.on_running(_task_running)
        obj.on_completion(_task_completed)
        obj.on_failure(_task_failed)
    else:
        raise TypeError(
            f"instrument() takes a Prefect flow or task, not {type(obj).__name__}: "
            "decorate the function with @flow or @task first"
        )
    setattr(obj, _MARK, True)
    return obj


# --- flows ---------------------------------------------------------------------


def _flow_key(flow_run: FlowRun) -> tuple[str, str]:
    return ("flow", str(flow_run.id))


def _parent_flow_run_id(flow_run: FlowRun) -> str | None:
    """The flow run this flow run is a subflow of, as Prefect's run context says."""
    if flow_run.parent_task_run_id is None:
        return None
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    outer = context.flow_run if context is not None else None
    if outer is None or outer.id == flow_run.id:
        return None
    return str(outer.id)


def _flow_running(flow: Flow[Any, Any], flow_run: FlowRun, state: State) -> None:
    key = _flow_key(flow_run)
    if recorder.run_of(key) is not None or recorder.node_of(key) is not None:
        return  # Prefect enters Running once a run; a retried flow keeps its record
    parent = _parent_flow_run_id(flow_run)
    parent_run = recorder.run_of(("flow", parent)) if parent is not None else None
    parent_node = recorder.node_of(("flow", parent)) if parent is not None else None
    if parent_run is not None or parent_node is not None:
        # a subflow: a node of the outer run, its tasks nested under it
        recorder.node_started(
            key,
            flow.name,
            run_key=("flow", parent) if parent_run is not None else None,
            parent_key=("flow", parent) if parent_node is not None else None,
            input=dict(flow_run.parameters),
            attributes={"prefect.flow_run_id": str(flow_run.id), "prefect.kind": _SUBFLOW},
        )
        return
    recorder.run_started(
        key,
        _workflow_id(flow.name),
        name=flow.name,
        data=dict(flow_run.parameters),
        attributes={"prefect.flow_run_id": str(flow_run.id), "prefect.flow_run_name": flow_run.name},
        run_id=str(flow_run.id),  # a task run in another process finds the run by its flow run's id
        traceparent=None if flowledger.traceparent() else flow_traceparent(flow_run.id),
    )


def _flow_completed(flow: Flow[Any, Any], flow_run: FlowRun, state: State) -> None:
    key = _flow_key(flow_run)
    output = _result(state)
    if recorder.node_of(key) is not None:
        recorder.node_finished(key, output=output)
    else:
        recorder.run_finished(key, output=output)


def _flow_failed(flow: Flow[Any, Any], flow_run: FlowRun, state: State) -> None:
    key = _flow_key(flow_run)
    error = _error(state)
    if recorder.node_of(key) is not None:
        recorder.node_finished(key, error=error)
    else:
        recorder.run_finished(key, error=error)


# --- tasks ---------------------------------------------------------------------


def _task_key(task_run: TaskRun) -> tuple[str, str]:
    return ("task", str(task_run.id))


def _task_running(task: Task[Any, Any], task_run: TaskRun, state: State) -> None:
    key = _task_key(task_run)
    running = recorder.node_of(key)
    if running is not None:  # Prefect retries: the attempt before this one failed
        recorder.node_finished(key, error=_retried_error(state))
    flow_key = ("flow", str(task_run.flow_run_id)) if task_run.flow_run_id is not None else None
    in_run = flow_key is not None and recorder.run_of(flow_key) is not None
    in_subflow = flow_key is not None and recorder.node_of(flow_key) is not None
    flow_run_id = task_run.flow_run_id
    if flow_key is not None and flow_run_id is not None and not in_run and not in_subflow:
        flow = _instrumented_flow_elsewhere(task_run)
        if flow is not None:  # the flow's run is recorded by another process: continue it here
            recorder.run_continued(
                flow_key,
                str(flow_run_id),
                workflow_id=_workflow_id(flow.name),
                traceparent=flow_traceparent(flow_run_id),
            )
            _parts.add(key)
            in_run = True
    recorder.node_started(
        key,
        task.name,
        run_key=flow_key if in_run else None,
        parent_key=flow_key if in_subflow else None,
        input=_parameters(),
        attempt=max(1, task_run.run_count),
        attributes={
            "prefect.task_run_id": str(task_run.id),
            "prefect.task_run_name": task_run.name,
            "prefect.flow_run_id": None if task_run.flow_run_id is None else str(task_run.flow_run_id),
        },
        current=True,  # Prefect calls a task's hooks where the task itself runs
    )


def _task_completed(task: Task[Any, Any], task_run: TaskRun, state: State) -> None:
    recorder.node_finished(_task_key(task_run), output=_result(state))
    _end_part(task_run)


def _task_failed(task: Task[Any, Any], task_run: TaskRun, state: State) -> None:
    recorder.node_finished(_task_key(task_run), error=_error(state))
    _end_part(task_run)


def _end_part(task_run: TaskRun) -> None:
    """End the part of a flow's run that this process recorded for the task run, if it made one."""
    key = _task_key(task_run)
    if key in _parts:
        _parts.discard(key)
        recorder.run_finished(("flow", str(task_run.flow_run_id)))


def _instrumented_flow_elsewhere(task_run: TaskRun) -> Flow[Any, Any] | None:
    """The task run's flow, when Prefect's run context says it is instrumented and runs in another process."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    flow = context.flow if context is not None else None
    flow_run = context.flow_run if context is not None else None
    if flow is None or flow_run is None or flow_run.id != task_run.flow_run_id:
        return None
    return flow if _flow_running in flow.on_running_hooks else None


def flow_traceparent(flow_run_id: UUID) -> str:
    """The W3C traceparent every process derives from a flow run's id: the trace of the flow's run.

    A flow's run (started where the flow runs) and the task runs Prefect runs
    in other processes all belong to the trace ``flow_run_id.hex``, under a
    span id derived from it too, so they meet in one trace with no context
    carried between the processes.
    """
    span_id = flow_run_id.hex[16:]
    if not int(span_id, 16):
        span_id = "0000000000000001"
    return f"00-{flow_run_id.hex}-{span_id}-01"


# --- what Prefect's states hold --------------------------------------------------


def _workflow_id(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_-" else "-" for c in name.lower()).strip("-") or "prefect-flow"


def _parameters() -> Any:
    from prefect.context import TaskRunContext

    context = TaskRunContext.get()
    return dict(context.parameters) if context is not None and context.parameters is not None else None


def _result(state: State) -> Any:
    try:
        return state.result(raise_on_failure=False, _sync=True)  # type: ignore[call-overload]
    except Exception:  # a result Prefect cannot read back here: the attempt is recorded without it
        return UNSET


def _error(state: State) -> BaseException:
    try:
        value = state.result(raise_on_failure=False, _sync=True)  # type: ignore[call-overload]
    except Exception as exc:
        value = exc
    if isinstance(value, BaseException):
        return value
    return ReportedFailure(state.message or f"Prefect reported the state {state.name}")


def _retried_error(state: State) -> BaseException:
    handling = sys.exc_info()[1]
    if handling is not None:
        return handling
    return ReportedFailure(state.message or f"Prefect retried the task ({state.name})")
