"""Executing a workflow: the DAG executor that generated workflow modules call.

A generated module is thin: it declares a :class:`~flowledger.workflow.Workflow`
of :class:`~flowledger.workflow.Node` specs (see :mod:`._spec`) and hands it to
:func:`execute`. Everything that decides how a run behaves lives in this
package, so fixing it needs no regeneration:

- nodes whose needs are met run concurrently (sync functions in worker
  threads, so they never block the event loop);
- every attempt goes through the SDK's ``attempt()`` hook (retries with
  backoff, ``timeout_s`` per attempt: see :mod:`._attempts`), run by the
  run's executor (:mod:`.executors`: in this process by default, or on a
  distributed engine's workers, where the attempt is recorded);
- ``when`` predicates skip a node, ``map`` runs it once per item with
  bounded concurrency, ``effect`` nodes are simulated in dry runs;
- a node that fails after its retries fails the run (unless
  ``on_error=CONTINUE``), its dependents are skipped, independent branches
  finish; a skipped node skips its dependents;
- the run's deadline and budget abort it, and so does its ``interrupt``
  event (the generated module sets it on SIGINT): running nodes are
  cancelled and the nodes that never started are recorded as skipped, as
  are a map's items that never started and a node stopped in its ``when``;
- every node ends with a record, whatever its code raises: ``SystemExit``
  fails the node, ``KeyboardInterrupt`` interrupts the run (see
  :mod:`._attempts`); neither leaves the node's task. Once the run is
  recorded, the KeyboardInterrupt is raised again to the run's caller.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import functools
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NoReturn

from flowledger._exceptions import RunAborted, WorkflowFailed
from flowledger._wire import REUSED_FROM_ATTRIBUTE, AbortReason, NodeStatus, RunStatus, TriggerType, event_schema
from flowledger.instrument import Run, record_skip, run
from flowledger.workflow._attempts import (
    aborted_reason,
    interruption,
    one_attempt,
    record_refusal,
    run_attempts,
    stopped_by,
)
from flowledger.workflow._host import MAX_WORKER_THREADS, NodeHost
from flowledger.workflow._in_context import InContext
from flowledger.workflow._resume import ResumePlan
from flowledger.workflow._spec import Node, OnError, Phase, Workflow
from flowledger.workflow.executors._base import Executor, LocalExecutor, executor_named

if TYPE_CHECKING:  # httpx itself is imported with the run's first http node (see NodeHost.http_client)
    import httpx

__all__ = ["MAX_WORKER_THREADS", "Execution", "RunResult", "execute", "execute_run"]

LOOP_TURN_S: Final = 0.005
"""A task running a chain's nodes one after another lets the event loop take a turn at least this often."""
INTERRUPTED_MESSAGE: Final = "the run was interrupted (SIGINT)"
"""The message of the RunAborted (reason ``interrupted``) of a run whose ``interrupt`` event was set."""
NodeWork = Coroutine[Any, Any, tuple[NodeStatus, Any]]
"""One node's work in a run: running it (or reusing its recorded output), to its state and output."""


@functools.cache
def skip_reason_max_chars() -> int:
    """The longest ``skip_reason`` a receiver accepts, as the wire format's schema declares it."""
    field = event_schema()["$defs"]["node_finished"]["properties"]["skip_reason"]
    return int(next(kind["maxLength"] for kind in field["anyOf"] if kind.get("type") == "string"))


def _cut_skip_reason(reason: str) -> str:
    """``reason`` cut to what the wire format accepts (a long repr in it would make receivers refuse the skip)."""
    limit = skip_reason_max_chars()
    return reason if len(reason) <= limit else reason[: limit - 1] + "…"


# --- results ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunResult:
    """How one run ended."""

    run_id: str | None
    """None when the run was not recorded (flowledger is disabled): there is no run id to show."""
    status: RunStatus
    output: Any = None
    error: BaseException | None = None
    node_id: str | None = None
    """The failing node, when a node failed the run."""


# --- running ----------------------------------------------------------------


async def execute(
    workflow: Workflow,
    payload: Any = None,
    *,
    dry_run: bool = False,
    trigger: TriggerType | None = None,
    traceparent: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    executor: Executor | str | None = None,
    parent_run_id: str | None = None,
) -> Any:
    """Run ``workflow`` once on ``payload`` and return its output.

    ``executor`` runs the node attempts: an :class:`~flowledger.workflow.executors.Executor`,
    a name (``"local"``, ``"celery"``), or None for ``$FLOWLEDGER_EXECUTOR`` (default ``local``).
    ``parent_run_id`` names the run that started this one (default: the run current here, if any).

    Raises :class:`~flowledger.WorkflowFailed` (its ``__cause__`` is the
    node's exception) when a node fails the run, and
    :class:`~flowledger.RunAborted` when the deadline or budget stops it.
    A KeyboardInterrupt that a node's code raised (Ctrl-C under Python's own
    SIGINT handler, or the node's own) is raised again once the run is
    recorded aborted (reason ``interrupted``), as it would be without the runtime.
    """
    result = await execute_run(
        workflow,
        payload,
        dry_run=dry_run,
        trigger=trigger,
        traceparent=traceparent,
        transport=transport,
        executor=executor,
        parent_run_id=parent_run_id,
    )
    if isinstance(result.error, RunAborted):
        raise result.error
    if result.status is not RunStatus.SUCCEEDED:
        failure = WorkflowFailed(
            f"workflow `{workflow.id}` failed at node `{result.node_id}`: {result.error!r} "
            + (f"(run {result.run_id})" if result.run_id else "(not recorded)"),
            run_id=result.run_id,
            node_id=result.node_id,
        )
        raise failure from result.error
    return result.output


async def execute_run(
    workflow: Workflow,
    payload: Any = None,
    *,
    dry_run: bool = False,
    trigger: TriggerType | None = None,
    traceparent: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    executor: Executor | str | None = None,
    resume: ResumePlan | None = None,
    parent_run_id: str | None = None,
    interrupt: asyncio.Event | None = None,
    raise_interrupt: bool = True,
) -> RunResult:
    """Run ``workflow`` once and return how it ended, without raising for a failed run.

    Setting ``interrupt`` aborts the run (reason ``interrupted``) as its deadline would: the running
    nodes are cancelled, the others recorded as skipped.

    A KeyboardInterrupt raised in a node's code (Ctrl-C landing there under Python's own SIGINT
    handler, or the node's own ``raise``) aborts the run (reason ``interrupted``) and, once the run is
    recorded, is raised again here, so that Ctrl-C stops the caller as it would without the runtime
    (an ``except Exception`` does not swallow it). ``raise_interrupt=False`` is for a host that handles
    SIGINT itself (the generated command line, ``--serve``): the abort is returned, not raised.

    ``resume`` (see :func:`~flowledger.workflow._resume.plan_resume`) makes the run a resume of an
    earlier one: its reused nodes are recorded with their recorded outputs instead of running, and the
    payload is the plan's. Raises ConfigError (before the run starts) for an executor name that is not known.
    """
    chosen = executor if executor is not None and not isinstance(executor, str) else executor_named(executor)
    if resume is not None:
        payload = resume.payload
    recorder = run(
        workflow.id,
        name=workflow.name,
        version=workflow.version,
        trigger=trigger or workflow.trigger_type,
        data=payload,
        dry_run=dry_run,
        deadline_s=workflow.limits.deadline_s,
        budget_usd=workflow.limits.budget_usd,
        definition_sha256=workflow.definition_sha256,
        traceparent=traceparent,
        capture=workflow.capture,
        resumed_from=None if resume is None else resume.run_id,
        resumed_from_definition_sha256=None if resume is None else resume.definition_sha256,
        sample_rate=workflow.sample_rate,
        project=workflow.project if resume is None or resume.project is None else resume.project,
        agent_id=workflow.agent_id,
        intent=workflow.intent,
        parent_run_id=parent_run_id,
    )
    execution = Execution(
        workflow, recorder, dry_run=dry_run, transport=transport, executor=chosen, interrupt=interrupt
    )
    if resume is not None:
        execution.reuse_from(resume)
    try:
        async with recorder:
            output = await execution.run_graph(payload)
            if execution.failure is not None:
                exc, node_id = execution.failure
                recorder.fail(exc, node_id)
            else:
                recorder.set_output(output)
    except RunAborted as abort:
        result = RunResult(recorder.run_id or None, RunStatus.ABORTED, error=abort)
    else:
        if execution.failure is not None:
            exc, node_id = execution.failure
            result = RunResult(recorder.run_id or None, RunStatus.FAILED, error=exc, node_id=node_id)
        else:
            result = RunResult(recorder.run_id or None, RunStatus.SUCCEEDED, output=output)
    finally:
        await execution.close()
    stopped = execution.keyboard_interrupt
    if stopped is not None and raise_interrupt:  # recorded: now the Ctrl-C the run's nodes held back goes on
        where = f"its run {result.run_id} is recorded {result.status.value}" if result.run_id else "not recorded"
        stopped.add_note(f"flowledger: raised in a node of workflow {workflow.id}; {where}")
        raise stopped
    return result


class Execution(NodeHost):
    """One run of a workflow: schedules nodes as their needs finish; the executor runs their attempts."""

    def __init__(
        self,
        workflow: Workflow,
        recorder: Run,
        *,
        dry_run: bool,
        transport: httpx.AsyncBaseTransport | None = None,
        executor: Executor | None = None,
        interrupt: asyncio.Event | None = None,
    ) -> None:
        super().__init__(workflow, recorder, dry_run=dry_run, transport=transport)
        self._interrupt = interrupt
        self.executor: Executor = executor if executor is not None else LocalExecutor()
        self._local = type(self.executor) is LocalExecutor
        self.failure: tuple[BaseException, str] | None = None
        self._states: dict[str, NodeStatus] = {}
        self._outputs: dict[str, Any] = {}
        self._unmet: dict[str, int] = {}
        self._dependents: dict[str, list[Node]] = {}
        self._unstarted: dict[str, Node] = {}
        self._ready: collections.deque[Node] = collections.deque()
        self._running: dict[asyncio.Task[None], Node] = {}
        self._payload: Any = None
        self._context = contextvars.Context()
        """The run's context, as ``run_graph`` found it: each node's task runs in a copy of it."""
        self._open = False
        """True while ``run_graph`` runs: a task ending after it (aborted, cancelled) starts nothing."""
        self._stop: BaseException | None = None
        """What a node's completion raised (RunAborted, mostly): ``run_graph`` raises it."""
        self._aborting: RunAborted | None = None
        """The abort, once ``_abort`` cancels the running nodes: what stopped them records why they stopped."""
        self._wakeup = asyncio.Event()
        self._reuse: dict[str, Any] = {}
        self._reused_from = ""

    def reuse_from(self, plan: ResumePlan) -> None:
        """Resume ``plan.run_id``: take its recorded outputs for the nodes the plan reuses."""
        self._reuse = dict(plan.reuse)
        self._reused_from = plan.run_id
        if not plan.repeat_effects:
            self.recorded_effects = plan.effects

    async def attempt_once(self, node: Node, value: Any, number: int, item: int | None) -> Any:
        """One attempt of ``node``, run (and recorded) where the executor runs it."""
        if self._local:  # what LocalExecutor.run_attempt does, without a coroutine more per attempt
            return await one_attempt(self, node, value, number, item)
        return await self.executor.run_attempt(self, node, value, number, item)

    # --- the graph ---------------------------------------------------------

    async def run_graph(self, payload: Any) -> Any:
        """Run every node; return the output node's output (None if it did not succeed).

        Each node's task settles its node when it ends and starts its ready
        dependents at once; this coroutine wakes only when nothing runs any
        more, when a node's end stopped the run (an abort) or at the deadline.
        """
        nodes = self.workflow.nodes
        self._unmet = {n.id: len(n.needs) for n in nodes}
        self._dependents = {n.id: [] for n in nodes}
        for node in nodes:
            for need in node.needs:
                self._dependents[need].append(node)
        self._unstarted = {n.id: n for n in nodes}
        self._ready = collections.deque(n for n in nodes if not n.needs)
        self._payload = payload
        self._context = contextvars.copy_context()
        self._open = True
        watch: asyncio.Task[bool] | None = None
        if self._interrupt is not None:
            watch = asyncio.create_task(self._interrupt.wait(), name="flowledger-interrupt")
            watch.add_done_callback(self._interrupted)
        try:
            self._start_ready()
            while self._running:
                await self._wait_for_done()
                if self._stop is not None:
                    raise self._stop
                self.run.check_limits()  # a passed deadline stops here, though no node finished
        except RunAborted as abort:
            self._open = False
            await self._abort(abort, list(self._unstarted.values()), self._running)
            raise
        except BaseException:  # cancelled from outside (e.g. the caller went away): stop the nodes too
            self._open = False
            for task in self._running:
                task.cancel()
            raise
        finally:
            self._open = False
            if watch is not None:
                watch.cancel()
        return self._outputs.get(self.workflow.output)

    def _interrupted(self, watch: asyncio.Task[bool]) -> None:
        """The ``interrupt`` event was set: stop the run as an abort (``run_graph`` wakes and raises it)."""
        if watch.cancelled() or not self._open or self._stop is not None:
            return
        self.run.abort(AbortReason.INTERRUPTED, INTERRUPTED_MESSAGE)
        self._stop = RunAborted(AbortReason.INTERRUPTED, INTERRUPTED_MESSAGE)
        self._wakeup.set()

    async def _wait_for_done(self) -> None:
        """Wait until no node runs, the run is stopped, or the deadline comes (one wake-up, however many run)."""
        self._wakeup.clear()
        remaining = self.run.remaining_s()
        if remaining is None:
            await self._wakeup.wait()
            return
        try:
            await asyncio.wait_for(self._wakeup.wait(), remaining)
        except TimeoutError:
            pass

    async def _node_task(self, node: Node, work: NodeWork) -> None:
        """Run one node, settle it and start what became ready, still in its task (no other wake-up).

        The first dependent that became ready runs next in this same task, in a context of its
        own (a copy of the run's, as a task of its own would have): a chain of nodes costs no
        wake-up of the event loop per node, and no node sees what another set in its context.
        """
        task = asyncio.current_task()
        assert task is not None
        context: contextvars.Context | None = None  # the first node runs in the task's own context
        turn_due = time.monotonic() + LOOP_TURN_S
        while True:
            outcome: tuple[NodeStatus, Any] | BaseException
            try:
                if context is None:
                    outcome = await work
                else:
                    if time.monotonic() >= turn_due:  # nodes that never wait must not keep the loop from the rest
                        await asyncio.sleep(0)
                        turn_due = time.monotonic() + LOOP_TURN_S
                    outcome = await InContext(work, context)
            except asyncio.CancelledError:
                work.close()  # not started, if cancelled while the loop took its turn
                if not self._open:
                    raise  # the run cancels its nodes (an abort, or its caller went away): nothing to settle
                outcome = asyncio.CancelledError(f"node `{node.id}` was cancelled")  # from inside: the node failed
            except (KeyboardInterrupt, SystemExit) as exc:  # never out of the task: asyncio would end the loop with it
                outcome = stopped_by(self, node, exc)  # a node's attempts contain their own: this is the rest
                outcome.__cause__ = exc
            except BaseException as exc:
                outcome = exc
            follow = self._context.run(self._done, task, node, outcome)
            if follow is None:
                return
            node, work = follow
            context = self._context.copy()

    def _done(
        self, task: asyncio.Task[None], node: Node, outcome: tuple[NodeStatus, Any] | BaseException
    ) -> tuple[Node, NodeWork] | None:
        """A node ended in ``task``: settle it, check the run's limits, start what became ready (in the run's context).

        Returns the ready node ``task`` runs next, if any.
        """
        if not self._open or self._running.pop(task, None) is None:
            return None  # the run is over (aborted, cancelled): what its tasks do now changes nothing
        follow = None
        try:
            self._finished(node, outcome)
            if self._stop is None:
                self.run.check_limits()  # a passed deadline or budget stops here, between nodes
                # A task asked to cancel (a node cancelled it and returned) runs nothing more: its ready dependents
                # get tasks of their own, as every node once did.
                follow = self._start_ready(task if not task.cancelling() else None)
        except BaseException as stop:  # a node's task does not raise to the run: hand it over
            if self._stop is None:
                self._stop = stop
            self._wakeup.set()
            return None
        if not self._running:
            self._wakeup.set()
        return follow

    def _settle(self, node: Node, state: NodeStatus) -> None:
        """Record ``node``'s final state; dependents whose needs are now all settled become ready."""
        self._states[node.id] = state
        for dependent in self._dependents[node.id]:
            self._unmet[dependent.id] -= 1
            if self._unmet[dependent.id] == 0:
                self._ready.append(dependent)

    def _start_ready(self, task: asyncio.Task[None] | None = None) -> tuple[Node, NodeWork] | None:
        """Start the ready nodes, each in a task of its own.

        With ``task`` (the task of a node that just ended), the first of them is not given a task:
        it is returned, to run next in ``task``.
        """
        follow: tuple[Node, Any] | None = None
        try:
            while self._ready:
                node = self._ready.popleft()
                del self._unstarted[node.id]
                blocker = next((n for n in node.needs if self._states[n] is not NodeStatus.SUCCEEDED), None)
                if blocker is not None:
                    how = "failed" if self._states[blocker] is NodeStatus.FAILED else "was skipped"
                    location = self.workflow.locations[node.id]
                    record_skip(node.id, f"needs `{blocker}`, which {how}", location=location)
                    self._settle(node, NodeStatus.SKIPPED)
                    continue
                value = self._input_of(node, self._payload)
                if task is not None and follow is None:
                    follow = node, value
                    continue
                new = asyncio.create_task(
                    self._node_task(node, self._work(node, value)), name=node.id, context=self._context.copy()
                )
                self._running[new] = node
        except BaseException:
            if follow is not None:  # never started: the abort records it as skipped
                self._unstarted[follow[0].id] = follow[0]
            raise
        if task is None or follow is None:
            return None
        node, value = follow
        self._running[task] = node
        task.set_name(node.id)
        return node, self._work(node, value)

    def _work(self, node: Node, value: Any) -> NodeWork:
        return self._reused(node, value) if node.id in self._reuse else self._run_node(node, value)

    def _input_of(self, node: Node, payload: Any) -> Any:
        if not node.needs:
            return payload
        if len(node.needs) == 1:
            return self._outputs[node.needs[0]]
        return {need: self._outputs[need] for need in node.needs}

    def _finished(self, node: Node, outcome: tuple[NodeStatus, Any] | BaseException) -> None:
        if not isinstance(outcome, BaseException):
            state, output = outcome
            if state is NodeStatus.SUCCEEDED:
                self._outputs[node.id] = output
            self._settle(node, state)
            return
        if isinstance(outcome, RunAborted):
            raise outcome
        if node.on_error is OnError.FAIL and self.failure is None:
            self.failure = (outcome, node.id)
        self._settle(node, NodeStatus.FAILED)

    async def _abort(self, abort: RunAborted, waiting: list[Node], running: dict[asyncio.Task[None], Node]) -> None:
        # The message reaches the CancelledError each running attempt records, so its error says why.
        cause = "an interrupt" if abort.reason == AbortReason.INTERRUPTED else f"the run's {abort.reason}"
        why = f"cancelled by {cause}: {abort}"
        self._aborting = abort
        for task in running:
            task.cancel(why)
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        for node in waiting:
            record_skip(node.id, aborted_reason(abort), location=self.workflow.locations[node.id])

    # --- one node ----------------------------------------------------------

    async def _reused(self, node: Node, value: Any) -> tuple[NodeStatus, Any]:
        """Record ``node`` as succeeded with the output the resumed run recorded, without running it."""
        output = self._reuse[node.id]
        with self.attempt(node, value, 1, None) as hook:
            hook.set_attribute(REUSED_FROM_ATTRIBUTE, self._reused_from)
            hook.set_output(output)
        return NodeStatus.SUCCEEDED, output

    async def _run_node(self, node: Node, value: Any) -> tuple[NodeStatus, Any]:
        if node.when is not None:
            try:
                keep = await self.call(node.when.resolve(), value, {})
                # The answer's truth test (and repr) is the predicate's too: an answer whose bool() raises (a
                # pandas frame, say) fails the phase with a record of its own, as the predicate raising does.
                skip = None if keep else _cut_skip_reason(f"when `{node.when}` returned {keep!r}")
            except asyncio.CancelledError as exc:
                if self._aborting is None:  # cancelled from inside, or the run's caller went away: it failed
                    self._fail_phase(node, value, Phase.WHEN, exc)
                location = self.workflow.locations[node.id]
                record_skip(node.id, aborted_reason(self._aborting), location=location)  # its call never started
                raise
            except SystemExit as exc:
                self._fail_phase(node, value, Phase.WHEN, stopped_by(self, node, exc), cause=exc)
            except KeyboardInterrupt as exc:
                abort = interruption(node)
                try:  # the phase's failure first: once the run is aborted, its hook would refuse to start (a skip)
                    self._fail_phase(node, value, Phase.WHEN, abort, cause=exc)
                finally:
                    self.interrupted_by(exc, abort)
            except Exception as exc:
                self._fail_phase(node, value, Phase.WHEN, exc)
            if skip is not None:
                record_skip(node.id, skip, location=self.workflow.locations[node.id])
                return NodeStatus.SKIPPED, None
        if node.map is None:
            return NodeStatus.SUCCEEDED, await run_attempts(self, node, value, None)
        if not isinstance(value, list | tuple):
            error = TypeError(f"node `{node.id}` maps over its input, which must be a list, not {type(value).__name__}")
            self._fail_phase(node, value, Phase.MAP, error)
        if not value:  # no item, so no item's record: the node is recorded once, succeeded with the output []
            self._phase_record(node, value, Phase.MAP, None)
            return NodeStatus.SUCCEEDED, []
        return NodeStatus.SUCCEEDED, await self._map(node, list(value))

    def _fail_phase(
        self, node: Node, value: Any, phase: Phase, error: BaseException, *, cause: BaseException | None = None
    ) -> NoReturn:
        """Record ``node``'s ``phase`` as one attempt that failed with ``error`` (``from cause``), and raise it."""
        self._phase_record(node, value, phase, error, cause)
        raise error  # not reached: the record raised it

    def _phase_record(
        self, node: Node, value: Any, phase: Phase, error: BaseException | None, cause: BaseException | None = None
    ) -> None:
        """Record ``node``'s ``phase`` as one attempt: failed with ``error`` (raised), or succeeded with output []."""
        hook = self.attempt(node, value, 1, None, phase=phase)
        try:
            with hook:
                if error is not None:
                    if cause is not None:
                        raise error from cause
                    raise error
                hook.set_output([])
        except RunAborted as abort:
            record_refusal(hook, node, abort)  # refused before it started: recorded as skipped
            raise

    async def _map(self, node: Node, items: list[Any]) -> list[Any]:
        """Run ``node`` once per item, at most ``max_concurrency`` at a time; return the outputs in item order.

        Each item runs in a task of its own, but an item's task is created only when its turn comes (when one
        of the ``max_concurrency`` before it ended), in item order: a map of any length keeps that many tasks,
        and the lists of its items and outputs, not a task per item. Once an item failed, the items whose turn
        comes after it are skipped (``an earlier item failed``, or the abort's reason); those running finish.
        """
        assert node.map is not None
        limit = node.map.max_concurrency
        if limit < 1:
            raise ValueError(f"node `{node.id}`: map max_concurrency must be at least 1, not {limit}")
        count = len(items)
        results: list[Any] = [None] * count
        errors: dict[int, BaseException] = {}
        """What the items that did not return raised, by index."""
        failed: list[BaseException] = []
        location = self.workflow.locations[node.id]
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        """Each item's task runs in a copy of this (the node's context, as the map begins)."""
        running: dict[asyncio.Task[Any], int] = {}
        waiting: set[int] = set()
        """Items whose task was created but has not begun: never started, if the map is cancelled now."""
        taken = 0
        """The items before this one have a task (running, or ended)."""
        stopping = False
        finished = loop.create_future()

        async def one(index: int, item: Any) -> Any:
            waiting.discard(index)
            if failed:
                abort = next((e for e in failed if isinstance(e, RunAborted)), None)
                reason = "an earlier item failed" if abort is None else aborted_reason(abort)
                record_skip(node.id, reason, item=index, location=location)
                return None
            try:
                return await run_attempts(self, node, item, index)
            except BaseException as exc:
                failed.append(exc)
                raise

        def start() -> None:
            nonlocal taken
            while taken < count and len(running) < limit and not stopping:
                index = taken
                taken += 1
                try:
                    task = loop.create_task(one(index, items[index]), context=context.copy())
                except BaseException as exc:  # not started: the item's error, and the map goes on
                    errors[index] = exc
                    continue
                waiting.add(index)
                running[task] = index
                task.add_done_callback(ended, context=context)
            if not running and not finished.done():
                finished.set_result(None)

        def ended(task: asyncio.Task[Any]) -> None:
            index = running.pop(task)
            try:
                results[index] = task.result()
            except BaseException as exc:  # the task's own outcome (a cancelled one's CancelledError), not raised here
                errors[index] = exc
            start()

        start()
        try:
            await finished
        except asyncio.CancelledError as cancel:  # stop the items as gather would: cancel them and let them end
            stopping = True
            tasks = list(running)
            message = cancel.args[0] if cancel.args else None
            for task in tasks:
                task.cancel(message)
            try:
                if tasks:
                    await asyncio.gather(*tasks, return_exceptions=True)
            finally:
                if self._aborting is not None:  # the items still waiting for their turn never started
                    reason = aborted_reason(self._aborting)
                    for index in (*sorted(waiting), *range(taken, count)):
                        record_skip(node.id, reason, item=index, location=location)
            raise
        if errors:
            ordered = [errors[index] for index in sorted(errors)]
            raise next((e for e in ordered if isinstance(e, RunAborted)), ordered[0])
        return results
