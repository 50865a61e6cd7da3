"""Attempts of one node: retries with backoff, ``timeout_s`` per attempt, effects.

Each attempt is its own ``attempt()`` record, so the history shows every
try with its error. Backoff never sleeps past the run's deadline; an
attempt is cut at ``timeout_s`` (NodeTimeout) or at the deadline
(RunAborted), whichever comes first; a TimeoutError the node's own code
raises is its error like any other (retried, and taken for neither). An
attempt after the first counts a ``retry`` penalty in its cost, an attempt
cut at its ``timeout_s`` a ``timeout`` penalty.

What the node's code raises stays inside its attempt: ``SystemExit`` (the
node called ``sys.exit``, even ``sys.exit(0)``) fails the attempt with a
``NodeExited``, and ``KeyboardInterrupt`` interrupts the run as Ctrl-C does
(``RunAborted``, reason ``interrupted``; the host keeps the
KeyboardInterrupt, which the run's caller gets once the run is recorded).
Neither may leave the node's task: asyncio would let it end the whole
event loop, and the run with it, unrecorded. An attempt the run's limits
refuse before it starts (its run passed its deadline or budget) is
recorded as skipped with the abort's reason, as a node that never
started is.
"""

from __future__ import annotations

import asyncio
from typing import Any, NoReturn, Protocol

from flowledger._exceptions import NodeTimeout, RunAborted
from flowledger._wire import AbortReason
from flowledger.instrument import NodeAttempt, Penalty, Run, record_skip
from flowledger.instrument._node import node_exited
from flowledger.workflow._spec import Node, Phase

__all__ = [
    "AttemptHost",
    "RetryHost",
    "aborted_reason",
    "interruption",
    "one_attempt",
    "record_refusal",
    "run_attempts",
    "stopped_by",
]


class AttemptHost(Protocol):
    """What attempting a node needs from the run executing it (``Execution`` is one)."""

    @property
    def run(self) -> Run:
        """The run's recorder: its deadline, and where an abort is recorded."""
        ...

    @property
    def dry_run(self) -> bool:
        """True when effect nodes are simulated."""
        ...

    def attempt(
        self,
        node: Node,
        value: Any,
        number: int,
        item: int | None,
        *,
        phase: Phase = Phase.CALL,
        span_id: str | None = None,
    ) -> NodeAttempt:
        """The SDK hook recording one attempt of ``node``."""
        ...

    async def invoke(self, node: Node, value: Any, hook: NodeAttempt) -> Any:
        """Do the node's work once."""
        ...

    def recorded_effect(self, node: Node, key: str | None) -> tuple[bool, Any]:
        """``(True, output)`` when a resumed run already did this effect with this idempotency key."""
        ...

    def interrupted_by(self, exc: KeyboardInterrupt, abort: RunAborted) -> None:
        """A node's code raised ``exc``: abort the run with ``abort``, and keep ``exc`` for the run's caller."""
        ...


class RetryHost(AttemptHost, Protocol):
    """What retrying a node needs: the run, and a way to run one attempt (through the run's executor)."""

    async def attempt_once(self, node: Node, value: Any, number: int, item: int | None) -> Any:
        """One attempt of ``node``, recorded where it runs."""
        ...


async def run_attempts(execution: RetryHost, node: Node, value: Any, item: int | None) -> Any:
    """Attempt ``node`` on ``value`` until one attempt succeeds or its retries are spent."""
    policy = node.retry
    number = 1
    while True:
        try:
            return await execution.attempt_once(node, value, number, item)
        except (RunAborted, asyncio.CancelledError):
            raise
        except Exception:
            if number >= policy.attempts:
                raise
        delay = policy.delay_s(number)
        remaining = execution.run.remaining_s()
        if remaining is not None:
            delay = min(delay, remaining)
        if delay > 0:
            await asyncio.sleep(delay)
        number += 1


def aborted_reason(abort: RunAborted) -> str:
    """The skip reason of a node (or map item, or attempt) that never started because the run was aborted."""
    return f"the run was aborted ({abort.reason})"


def record_refusal(hook: NodeAttempt, node: Node, abort: RunAborted) -> None:
    """Record as skipped an attempt that ``abort`` stopped before it started (the run's limits refused it).

    An attempt that started has its own record (failed, for a RunAborted raised inside it): nothing is added.
    """
    if not hook.ended:
        location = hook.location
        record_skip(node.id, aborted_reason(abort), item=hook.item, attempt=hook.attempt, location=location)


def interruption(node: Node) -> RunAborted:
    """The RunAborted (reason ``interrupted``) of a run whose node's code raised KeyboardInterrupt."""
    return RunAborted(AbortReason.INTERRUPTED, f"the run was interrupted: node `{node.id}` raised KeyboardInterrupt")


def stopped_by(host: AttemptHost, node: Node, exc: SystemExit | KeyboardInterrupt) -> Exception:
    """What a node's code raising ``exc`` becomes, so that it stays inside the run (``raise ... from exc``).

    SystemExit: a NodeExited failing the node. KeyboardInterrupt: the run is interrupted, as by Ctrl-C (it cannot
    be told apart from a real one that reached the node's code): ``host`` aborts its run and keeps ``exc`` for the
    run's caller, and the RunAborted is returned.
    """
    if isinstance(exc, SystemExit):
        return node_exited(node.id, exc)
    abort = interruption(node)
    host.interrupted_by(exc, abort)
    return abort


def _limit_passed(execution: AttemptHost, node: Node, number: int, hook: NodeAttempt, limit: float) -> NoReturn:
    """The attempt's ``limit`` expired: NodeTimeout when it was ``timeout_s``, else the run passed its deadline."""
    if node.timeout_s is not None and limit >= node.timeout_s:
        hook.add_penalty(Penalty.TIMEOUT)
        raise NodeTimeout(
            f"node `{node.id}` attempt {number} ran longer than its timeout_s of {node.timeout_s:g} s"
        ) from None
    deadline_s = execution.run.deadline_s
    message = f"the run passed its deadline of {deadline_s:g} s"
    execution.run.abort(AbortReason.DEADLINE, message)
    execution.run.check_limits()  # raises the run's abort: this one, or one recorded before it
    raise RunAborted(AbortReason.DEADLINE, message)  # not reached


async def one_attempt(
    execution: AttemptHost, node: Node, value: Any, number: int, item: int | None, *, span_id: str | None = None
) -> Any:
    """Attempt ``node`` once, recorded by its host's hook: dry runs, the effect guard, ``timeout_s``, the deadline."""
    hook = execution.attempt(node, value, number, item, span_id=span_id)
    try:
        with hook:
            if number > 1:
                hook.add_penalty(Penalty.RETRY)
            if node.effect and execution.dry_run:
                hook.simulate()
                return None
            if node.effect:
                hit, recorded = hook.guard_hit()
                if not hit:
                    hit, recorded = execution.recorded_effect(node, hook.idempotency_key)
                if hit:
                    hook.duplicate(recorded)
                    return recorded
            limits = [t for t in (node.timeout_s, execution.run.remaining_s()) if t is not None]
            limit = min(limits) if limits else None
            work = execution.invoke(node, value, hook)
            if limit is not None and limit <= 0:  # the deadline just passed: the node's code never starts
                work.close()
                _limit_passed(execution, node, number, hook, limit)
            # The limit is a scope around the await, not a wait_for task: its expiry is told apart from a
            # TimeoutError the node's own code raised (an upstream's timeout, say), which is the node's error
            # like any other: it is retried, and neither charged a timeout penalty nor taken for the deadline.
            scope = asyncio.timeout(limit)
            try:
                async with scope:
                    output = await work
            except (SystemExit, KeyboardInterrupt) as exc:
                raise stopped_by(execution, node, exc) from exc
            except TimeoutError:
                if limit is None or not scope.expired():
                    raise
                _limit_passed(execution, node, number, hook, limit)
            hook.set_output(output)
            return output
    except RunAborted as abort:
        record_refusal(hook, node, abort)  # refused before it started, the attempt has no record yet
        raise
